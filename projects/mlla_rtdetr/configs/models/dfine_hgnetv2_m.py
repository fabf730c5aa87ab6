"""D-FINE-M (official ``dfine_hgnetv2_m_coco.yml``): HGNetv2-B2 with learnable affine blocks,
trainable BatchNorm, CSP depth 0.67, 4 decoder layers."""
from .dfine_hgnetv2_l import model  # noqa: F401

model.backbone.name = "B2"
model.backbone.freeze_at = -1
model.backbone.freeze_norm = False
model.backbone.use_lab = True
model.encoder.depth_mult = 0.67
model.decoder.num_layers = 4
