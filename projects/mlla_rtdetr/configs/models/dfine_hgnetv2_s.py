"""D-FINE-S (official ``dfine_hgnetv2_s_coco.yml``): HGNetv2-B0 with learnable affine blocks,
trainable BatchNorm, CSP depth 0.34 / expansion 0.5, 3 decoder layers."""
from .dfine_hgnetv2_l import model  # noqa: F401

model.backbone.name = "B0"
model.backbone.freeze_at = -1
model.backbone.freeze_norm = False
model.backbone.use_lab = True
model.encoder.depth_mult = 0.34
model.encoder.expansion = 0.5
model.decoder.num_layers = 3
