"""RT-DETR-R34: ResNet-34-vd (trainable BatchNorm), CSP expansion 0.5, 4 decoder layers."""
from .rtdetr_r50vd import model, rtdetr_v1  # noqa: F401

model.backbone.depth = 34
model.backbone.freeze_at = -1
model.backbone.freeze_norm = False
model.encoder.expansion = 0.5
model.decoder.num_layers = 4
