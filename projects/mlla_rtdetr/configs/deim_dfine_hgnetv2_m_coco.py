"""DEIM-D-FINE-M (official ``deim_dfine/deim_hgnetv2_m_coco.yml`` on ``dfine_hgnetv2_m_coco.yml``,
ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The DEIM-D-FINE-S recipe (``deim_dfine_hgnetv2_s_coco.py``: total batch 32, Dense O2O, AdamW
wd 1e-4 with the S YAML's two groups, flat-cosine from a 2000-iteration quadratic warm-up to 0.5x,
EMA 0.9999 / 1000-iteration warm-up restarted with decay 0.9999 at the last policy epoch, grad
clip 0.1, AMP) with what the M YAMLs change: the M model (``models/deim_dfine_hgnetv2_m.py``), 102
epochs with policy epochs [4, 49, 90] (MixUp in [4, 49), flat until 49, cosine to epoch 90 =
102 - 12), 640 six times in the multi-scale list, lr 4e-4 with the backbone (except ``bn``) at 4e-5.
Nothing differs from the official YAML. ImageNet start: ``PPHGNetV2_B2_stage1.pth``.
"""
from .deim_dfine_hgnetv2_s_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_dfine_hgnetv2_m import model  # noqa: F401

dataloader.train.mapper.policy_epochs = [4, 49, 90]
dataloader.train.batch_augment.multiscale_sizes.base_repeat = 6
optimizer.params.rules[0]["lr"] = 4e-5
train.epochs = 102
train.output_dir = "./output/deim_dfine_hgnetv2_m_coco"
