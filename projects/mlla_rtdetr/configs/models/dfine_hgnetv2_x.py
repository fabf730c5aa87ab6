"""D-FINE-X (official ``dfine_hgnetv2_x_coco.yml``): HGNetv2-B5, encoder width 384 with FFN 2048
(the 256-wide decoder projects the 384-channel maps), ``reg_scale`` 8."""
from .dfine_hgnetv2_l import model  # noqa: F401

model.backbone.name = "B5"
model.encoder.hidden_dim = 384
model.encoder.dim_feedforward = 2048
model.decoder.feat_channels = [384, 384, 384]
model.decoder.reg_scale = 8.0
