"""RT-DETRv2-H: HGNetv2-H backbone (official ``rtdetrv2_hgnetv2_h_6x_coco.yml``).

HGNetv2-H (= PP-HGNetV2-B6) with encoder width 512, FFN 2048 and two transformer layers in the
intra-scale (AIFI) block; the decoder stays 256 wide. Parameters: 125,584,348 (backbone 68,847,056).
"""
from .rtdetr_hgnetv2_l import model, rtdetr_v1  # noqa: F401

model.backbone.name = "H"
model.encoder.hidden_dim = 512
model.encoder.dim_feedforward = 2048
model.encoder.num_encoder_layers = 2
model.decoder.feat_channels = [512, 512, 512]
