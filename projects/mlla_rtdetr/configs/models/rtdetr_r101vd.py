"""RT-DETR-R101: ResNet-101-vd (frozen stem and BatchNorm), encoder width 384 with FFN 2048;
the decoder stays 256 wide and projects the 384-channel maps."""
from .rtdetr_r50vd import model, rtdetr_v1  # noqa: F401

model.backbone.depth = 101
model.encoder.hidden_dim = 384
model.encoder.dim_feedforward = 2048
model.decoder.feat_channels = [384, 384, 384]
