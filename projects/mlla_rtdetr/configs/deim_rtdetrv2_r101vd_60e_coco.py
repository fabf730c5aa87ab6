"""DEIM-RT-DETRv2-X (official ``deim_rtdetrv2/deim_r101vd_60e_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad)
on COCO.

The DEIM-RT-DETRv2-L recipe (``deim_rtdetrv2_r50vd_60e_coco.py``: 60 epochs, total batch 16, policy
epochs [4, 34, 58], AdamW lr 2e-4 / wd 1e-4, flat-cosine, EMA 0.9999 / 2000-iteration warm-up
restarted at 58, grad clip 0.1, AMP) with the R101 model (``models/deim_rtdetrv2_r101vd.py``) and
its backbone at 2e-6. Nothing differs from the official YAML. ImageNet start:
``ResNet101_vd_ssld_pretrained_from_paddle.pth``.
"""
from .deim_rtdetrv2_r50vd_60e_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_rtdetrv2_r101vd import model  # noqa: F401

optimizer.params.rules[0]["lr"] = 2e-6
train.output_dir = "./output/deim_rtdetrv2_r101vd_60e_coco"
