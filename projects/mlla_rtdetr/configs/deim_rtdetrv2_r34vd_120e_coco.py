"""DEIM-RT-DETRv2-M (official ``deim_rtdetrv2/deim_r34vd_120e_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad)
on COCO; the DEIM README's M is the R34 model (RT-DETRv2 calls its R34 model M*).

The DEIM-RT-DETRv2-S recipe (``deim_rtdetrv2_r18vd_120e_coco.py``: 120 epochs, total batch 16,
Dense O2O with policy epochs [4, 64, 117], AdamW lr 2e-4 / wd 1e-4, flat-cosine, EMA 0.9999 /
2000-iteration warm-up restarted at 117, grad clip 0.1, AMP) with the R34 model
(``models/deim_rtdetrv2_r34vd.py``) and the R34 YAML's groups: backbone parameters not named
``norm`` at 1e-4, every ``norm`` / ``bn`` parameter without weight decay. Nothing differs from the
official YAML. ImageNet start: ``ResNet34_vd_pretrained_from_paddle.pth``.
"""
from .deim_rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_rtdetrv2_r34vd import model  # noqa: F401

optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm).*$", lr=1e-4),
    dict(pattern=r"^(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
train.output_dir = "./output/deim_rtdetrv2_r34vd_120e_coco"
