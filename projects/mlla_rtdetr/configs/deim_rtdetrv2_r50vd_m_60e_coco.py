"""DEIM-RT-DETRv2-M* (official ``deim_rtdetrv2/deim_r50vd_m_60e_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad)
on COCO; the DEIM README's M* is the R50-m model (RT-DETRv2 calls its R50-m model M).

The DEIM-RT-DETRv2-L recipe (``deim_rtdetrv2_r50vd_60e_coco.py``: 60 epochs, total batch 16, policy
epochs [4, 34, 58], AdamW lr 2e-4 / wd 1e-4 with the backbone at 2e-5, flat-cosine, EMA 0.9999 /
2000-iteration warm-up restarted at 58, grad clip 0.1, AMP) with the R50-m model
(``models/deim_rtdetrv2_r50vd_m.py``: 3 decoder layers, the third evaluated). Nothing differs
from the official YAML. ImageNet start: ``ResNet50_vd_ssld_v2_pretrained_from_paddle.pth``.
"""
from .deim_rtdetrv2_r50vd_60e_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_rtdetrv2_r50vd_m import model  # noqa: F401

train.output_dir = "./output/deim_rtdetrv2_r50vd_m_60e_coco"
