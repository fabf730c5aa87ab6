"""MLLA-RT-DETR-B: the MLLA-S model (``mlla_rtdetr_s.py``: depths 3-6-21-6, RT-DETR-R101's encoder
and decoder) with the MLLA-B backbone width (C=96, heads 3-6-12-24). Backbone drop path 0.1 (the
only official MLLA-B detection config, 1x)."""
from .mlla_rtdetr_s import model

model.backbone.embed_dim = 96
model.backbone.num_heads = (3, 6, 12, 24)
model.backbone.drop_path_rate = 0.1
