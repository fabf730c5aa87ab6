"""RT-DETR-R34: the R18 model (``rtdetr_r18vd.py``) with ResNet-34-vd and 4 decoder layers."""
from .rtdetr_r18vd import model, rtdetr_v1  # noqa: F401

model.backbone.depth = 34
model.decoder.num_layers = 4
