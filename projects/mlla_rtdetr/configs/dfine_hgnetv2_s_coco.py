"""D-FINE-S (official ``deim_dfine/dfine_hgnetv2_s_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The D-FINE-M recipe (``dfine_hgnetv2_m_coco.py``: 132 epochs, total batch 32, RT-DETR augmentation
and multi-scale until epoch 120, AdamW wd 1e-4 with the M YAML's three groups, quadratic warm-up
over 500 iterations then constant, EMA 0.9999 / 1000-iteration warm-up restarted with decay 0.9999
at 120, grad clip 0.1, AMP) with what the S YAML changes: the S model
(``models/dfine_hgnetv2_s.py``, HGNetv2-B0), the backbone at 1e-4 (half the base lr 2e-4) and 640
twenty times in the multi-scale list. Nothing differs from the official YAML. ImageNet start:
``PPHGNetV2_B0_stage1.pth``.
"""
from .dfine_hgnetv2_m_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.dfine_hgnetv2_s import model  # noqa: F401

dataloader.train.multiscale_sizes.base_repeat = 20
optimizer.params.rules[0]["lr"] = 1e-4
optimizer.params.rules[1]["lr"] = 1e-4
train.output_dir = "./output/dfine_hgnetv2_s_coco"
