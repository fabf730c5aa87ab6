"""DEIM-RT-DETRv2-L (official ``deim_rtdetrv2/deim_r50vd_60e_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad)
on COCO; the base of the R50-m and R101 recipes.

The DEIM-RT-DETRv2-M recipe (``deim_rtdetrv2_r34vd_120e_coco.py``: total batch 16, Dense O2O,
AdamW lr 2e-4 / wd 1e-4 with backbone parameters not named ``norm`` at a lower lr and no weight
decay on any ``norm`` / ``bn`` parameter, flat-cosine to 0.5x, EMA 0.9999 / 2000-iteration
warm-up, grad clip 0.1, AMP) with what the R50 YAML changes: the R50 model
(``models/deim_rtdetrv2_r50vd.py``), 60 epochs with policy epochs [4, 34, 58] (MixUp in [4, 34),
flat until 34, cosine to epoch 58 = 60 - 2, EMA restart at 58) and the backbone at 2e-5. Nothing
differs from the official YAML. ImageNet start: ``ResNet50_vd_ssld_v2_pretrained_from_paddle.pth``.
"""
from .deim_rtdetrv2_r34vd_120e_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.deim_rtdetrv2_r50vd import model  # noqa: F401

dataloader.train.mapper.policy_epochs = [4, 34, 58]
optimizer.params.rules[0]["lr"] = 2e-5
train.epochs = 60
train.output_dir = "./output/deim_rtdetrv2_r50vd_60e_coco"
