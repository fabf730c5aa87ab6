"""RT-DETR with a ResNet-50-vd backbone (official ``rtdetrv2_r50vd`` / ``rtdetr_r50vd`` model).

This file is the base of every RT-DETR model config: the other sizes import ``model`` and
change the backbone / encoder / decoder widths. Architecture is the official v2 one; v1 recipes
set ``model.decoder.version = "v1"`` (see ``rtdetr_v1`` below). Parameters: 42,891,372.
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling import (
    RTDETR,
    HungarianMatcher,
    HybridEncoder,
    PResNet,
    RTDETRCriterion,
    RTDETRTransformer,
)

model = L(RTDETR)(
    backbone=L(PResNet)(
        depth=50,
        variant="d",
        out_features=("res3", "res4", "res5"),
        freeze_at=0,  # official semantics: 0 freezes the stem
        freeze_norm=True,
        act="relu",
    ),
    encoder=L(HybridEncoder)(
        # from backbone.output_shape(), finest first (ResNet-50-vd: [512, 1024, 2048] at [8, 16, 32]);
        # any other backbone needs no edit here (mlla_rtdetr.config resolvers)
        in_channels="${backbone_channels:${..backbone}}",
        feat_strides="${backbone_strides:${..backbone}}",
        hidden_dim=256,
        use_encoder_idx=[2],
        num_encoder_layers=1,
        nhead=8,
        dim_feedforward=1024,
        dropout=0.0,
        enc_act="gelu",
        attention="softmax",
        expansion=1.0,
        depth_mult=1.0,
        act="silu",
        eval_spatial_size=(640, 640),
    ),
    decoder=L(RTDETRTransformer)(
        num_classes="${..num_classes}",
        hidden_dim=256,
        num_queries=300,
        feat_channels=[256, 256, 256],
        feat_strides="${..encoder.feat_strides}",
        num_levels=3,
        num_points=4,  # 4 points on each of the 3 levels (official v2 YAML: [4, 4, 4])
        nhead=8,
        num_layers=6,
        dim_feedforward=1024,
        dropout=0.0,
        activation="relu",
        num_denoising=100,
        label_noise_ratio=0.5,
        box_noise_scale=1.0,
        eval_spatial_size=(640, 640),
        eval_idx=-1,
        cross_attn_method="default",
        query_select_method="default",
        version="v2",
    ),
    criterion=L(RTDETRCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2.0),
        weight_dict={"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        losses=["vfl", "boxes"],
        alpha=0.75,
        gamma=2.0,
    ),
    num_classes=80,
    num_top_queries=300,
    pixel_mean=[0.0, 0.0, 0.0],
    pixel_std=[255.0, 255.0, 255.0],
    channels_last=None,  # None: channels-last images on CPU (fastest there), NCHW on GPU
)


def rtdetr_v1(model):
    """Switch a model config to the official v1 (``rtdetr_pytorch``) decoder behaviour in place
    (same parameters and key names; v1 checkpoints are renamed by the converter)."""
    model.decoder.version = "v1"
    return model
