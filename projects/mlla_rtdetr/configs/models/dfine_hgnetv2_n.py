"""D-FINE-N (official ``dfine_hgnetv2_n_coco.yml``): HGNetv2-B0 (learnable affine blocks,
trainable BatchNorm) returning only strides 16 / 32; encoder width 128 (FFN 512, AIFI on the
stride-32 map, CSP depth 0.5 / expansion 0.34); a 128-wide 3-layer decoder on 2 levels with
6 points each."""
from .dfine_hgnetv2_l import model  # noqa: F401

model.backbone.name = "B0"
model.backbone.out_indices = (2, 3)
model.backbone.freeze_at = -1
model.backbone.freeze_norm = False
model.backbone.use_lab = True
model.encoder.hidden_dim = 128
model.encoder.use_encoder_idx = [1]
model.encoder.dim_feedforward = 512
model.encoder.expansion = 0.34
model.encoder.depth_mult = 0.5
model.decoder.hidden_dim = 128
model.decoder.feat_channels = [128, 128]
model.decoder.num_levels = 2
model.decoder.num_points = [6, 6]
model.decoder.num_layers = 3
model.decoder.dim_feedforward = 512
