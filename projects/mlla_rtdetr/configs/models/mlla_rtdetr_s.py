"""MLLA-RT-DETR-S: the MLLA-T model (``mlla_rtdetr_t.py``) with the MLLA-S backbone (C=64, depths
3-6-21-6, heads 2-4-8-16; drop path 0.3 as in the official MLLA-S 3x detection config) and the
hybrid encoder and decoder widths of RT-DETR-R101 (``rtdetr_r101vd.py``: encoder width 384, FFN
2048; 6 decoder layers)."""
from .mlla_rtdetr_t import model

model.backbone.depths = (3, 6, 21, 6)
model.encoder.hidden_dim = 384
model.encoder.dim_feedforward = 2048
model.decoder.feat_channels = [384, 384, 384]
