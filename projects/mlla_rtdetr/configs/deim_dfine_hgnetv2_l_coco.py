"""DEIM-D-FINE-L (official ``deim_dfine/deim_hgnetv2_l_coco.yml`` on ``dfine_hgnetv2_l_coco.yml``,
ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The DEIM-D-FINE-S recipe (``deim_dfine_hgnetv2_s_coco.py``: total batch 32, Dense O2O, flat-cosine
from a 2000-iteration quadratic warm-up to 0.5x, EMA 0.9999 / 1000-iteration warm-up restarted
with decay 0.9999 at the last policy epoch, grad clip 0.1, AMP) with what the L YAMLs change: the L
model (``models/deim_dfine_hgnetv2_l.py``, HGNetv2-B4 with trainable BatchNorm), 58 epochs with
policy epochs [4, 29, 50] (MixUp in [4, 29), flat until 29, cosine to epoch 50 = 58 - 8), 640
four times in the multi-scale list, AdamW lr 5e-4 / wd 1.25e-4 with backbone parameters not named
``norm`` at 2.5e-5 and no weight decay on encoder / decoder ``norm`` / ``bn`` parameters. Nothing
differs from the official YAML. ImageNet start: ``PPHGNetV2_B4_stage1.pth``.
"""
from .deim_dfine_hgnetv2_s_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_dfine_hgnetv2_l import model  # noqa: F401

dataloader.train.mapper.policy_epochs = [4, 29, 50]
dataloader.train.batch_augment.multiscale_sizes.base_repeat = 4
optimizer.lr = 5e-4
optimizer.weight_decay = 1.25e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr=2.5e-5),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
train.epochs = 58
train.output_dir = "./output/deim_dfine_hgnetv2_l_coco"
