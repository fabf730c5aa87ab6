"""MLLA-RT-DETR-T: MLLA-T backbone (C=64, depths 2-4-8-4, heads 2-4-8-16; 33.9 GMACs at 640)
with the standard RT-DETR hybrid encoder (AIFI on S5 + CCFF) and the 6-layer v2 decoder.

The head is RT-DETR-R50's (hidden 256, CSP expansion 1.0): MLLA-T is about as large as
ResNet-50-vd (24M parameters). Backbone drop path 0.3 as in the official MLLA-T 3x detection
config; inputs are normalized with the ImageNet mean/std the MLLA classifier was trained with.
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling.backbone.mlla import MLLABackbone

from .rtdetr_r50vd import model

# ImageNet statistics (RGB, 0..255) used to pretrain MLLA.
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]

model.backbone = L(MLLABackbone)(
    embed_dim=64,
    depths=(2, 4, 8, 4),
    num_heads=(2, 4, 8, 16),
    mlp_ratio=4.0,
    drop_path_rate=0.3,
    out_features=("res3", "res4", "res5"),
    use_checkpoint=False,
)
model.pixel_mean = IMAGENET_MEAN
model.pixel_std = IMAGENET_STD
