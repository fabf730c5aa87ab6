"""DEIM-D-FINE-N (official ``deim_dfine/deim_hgnetv2_n_coco.yml`` on ``dfine_hgnetv2_n_coco.yml``,
ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The DEIM-D-FINE-S recipe (``deim_dfine_hgnetv2_s_coco.py``: Dense O2O, 2000-iteration quadratic
warm-up, EMA 0.9999 / 1000-iteration warm-up restarted with decay 0.9999 at the last policy epoch,
grad clip 0.1, AMP) with what the N YAMLs change: the N model (``models/deim_dfine_hgnetv2_n.py``),
160 epochs, total batch 128, policy epochs [4, 78, 148] (MixUp in [4, 78)), no multi-scale
(official ``base_size_repeat: ~``), AdamW lr 8e-4 / wd 1e-4 with the N YAML's three groups
(backbone at 4e-4, its ``norm`` parameters, if any, without weight decay; no weight decay on
encoder / decoder ``norm`` / ``bn`` / ``bias``), and no lr decay: the official ``lr_gamma`` 1.0
and ``flat_epoch`` 7800 keep the lr at its base value after the warm-up. Nothing differs from the
official YAML. ImageNet start: ``PPHGNetV2_B0_stage1.pth``.
"""
from .deim_dfine_hgnetv2_s_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_dfine_hgnetv2_n import model  # noqa: F401

dataloader.train.total_batch_size = 128
dataloader.train.mapper.policy_epochs = [4, 78, 148]
dataloader.train.batch_augment.multiscale_sizes = None
optimizer.lr = 8e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr=4e-4),
    dict(pattern=r"^(?=.*backbone)(?=.*norm|bn).*$", lr=4e-4, weight_decay=0.0),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$", weight_decay=0.0),
]
lr_multiplier.flat = 7800  # epochs (official flat_epoch), not the policy's 78
lr_multiplier.min_factor = 1.0  # official lr_gamma 1.0
train.epochs = 160
train.output_dir = "./output/deim_dfine_hgnetv2_n_coco"
