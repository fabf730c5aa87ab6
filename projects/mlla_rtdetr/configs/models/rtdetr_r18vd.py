"""RT-DETR-R18: ResNet-18-vd (trainable BatchNorm), CSP expansion 0.5, 3 decoder layers.
Parameters: 20,184,464 (official manifest)."""
from .rtdetr_r50vd import model, rtdetr_v1  # noqa: F401

model.backbone.depth = 18
model.backbone.freeze_at = -1
model.backbone.freeze_norm = False
model.encoder.expansion = 0.5
model.decoder.num_layers = 3
