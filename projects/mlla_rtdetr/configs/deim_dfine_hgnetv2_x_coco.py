"""DEIM-D-FINE-X (official ``deim_dfine/deim_hgnetv2_x_coco.yml`` on ``dfine_hgnetv2_x_coco.yml``,
ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The DEIM-D-FINE-L recipe (``deim_dfine_hgnetv2_l_coco.py``: 58 epochs, total batch 32, policy
epochs [4, 29, 50], AdamW lr 5e-4 / wd 1.25e-4, flat-cosine, EMA 0.9999 / 1000-iteration warm-up,
grad clip 0.1, AMP) with what the X YAMLs change: the X model (``models/deim_dfine_hgnetv2_x.py``,
HGNetv2-B5), the backbone at 5e-6, the EMA restarted with decay 0.9998 and 640 three times in the
multi-scale list. Nothing differs from the official YAML. ImageNet start: ``PPHGNetV2_B5_stage1.pth``.
"""
from .deim_dfine_hgnetv2_l_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_dfine_hgnetv2_x import model  # noqa: F401

dataloader.train.batch_augment.multiscale_sizes.base_repeat = 3
optimizer.params.rules[0]["lr"] = 5e-6
train.model_ema.restart_decay = 0.9998
train.output_dir = "./output/deim_dfine_hgnetv2_x_coco"
