"""D-FINE-X (official ``deim_dfine/dfine_hgnetv2_x_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The D-FINE-L recipe (``dfine_hgnetv2_l_coco.py``: 80 epochs, total batch 32, RT-DETR augmentation
and multi-scale until epoch 72, AdamW lr 2.5e-4 / wd 1.25e-4, quadratic warm-up over 500
iterations then constant, EMA 0.9999 / 1000-iteration warm-up restarted at 72, grad clip 0.1,
AMP) with what the X YAML changes: the X model (``models/dfine_hgnetv2_x.py``, HGNetv2-B5), the
backbone at 2.5e-6, the EMA restarted with decay 0.9998 and 640 three times in the multi-scale
list. Nothing differs from the official YAML. ImageNet start: ``PPHGNetV2_B5_stage1.pth``.
"""
from .dfine_hgnetv2_l_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.dfine_hgnetv2_x import model  # noqa: F401

dataloader.train.multiscale_sizes.base_repeat = 3
optimizer.params.rules[0]["lr"] = 2.5e-6
train.model_ema.restart_decay = 0.9998
train.output_dir = "./output/dfine_hgnetv2_x_coco"
