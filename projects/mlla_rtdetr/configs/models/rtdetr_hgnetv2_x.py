"""RT-DETR-X / RT-DETRv2-X: HGNetv2-X backbone (official ``rtdetrv2_hgnetv2_x_6x_coco.yml``).

HGNetv2-X (= PP-HGNetV2-B5) with encoder width 384 and FFN 2048; the decoder stays 256 wide and
projects the 384-channel maps. Parameters: 67,374,188 (backbone 33,231,840).
"""
from .rtdetr_hgnetv2_l import model, rtdetr_v1  # noqa: F401

model.backbone.name = "X"
model.encoder.hidden_dim = 384
model.encoder.dim_feedforward = 2048
model.decoder.feat_channels = [384, 384, 384]
