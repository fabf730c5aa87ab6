"""MLLA-RT-DETR-B: MLLA-B backbone (C=96, depths 3-6-21-6, heads 3-6-12-24) with the hybrid
encoder and decoder of RT-DETR-R101 (encoder width 384, FFN 2048; 6 decoder layers).
Backbone drop path 0.1 (the only official MLLA-B detection config, 1x)."""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling.backbone.mlla import MLLABackbone

from .mlla_rtdetr_t import IMAGENET_MEAN, IMAGENET_STD
from .rtdetr_r101vd import model

model.backbone = L(MLLABackbone)(
    embed_dim=96,
    depths=(3, 6, 21, 6),
    num_heads=(3, 6, 12, 24),
    mlp_ratio=4.0,
    drop_path_rate=0.1,
    out_features=("res3", "res4", "res5"),
    use_checkpoint=False,
)
model.pixel_mean = IMAGENET_MEAN
model.pixel_std = IMAGENET_STD
