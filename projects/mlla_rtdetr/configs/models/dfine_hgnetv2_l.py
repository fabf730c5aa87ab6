"""D-FINE-L (official ``deim_dfine/dfine_hgnetv2_l_coco.yml`` on ``base/dfine_hgnetv2.yml``,
ShihuaHuang95/DEIM @ a9aa4ad), the base of every D-FINE / DEIM-D-FINE model config.

HGNetv2-B4 (stem frozen, FrozenBatchNorm2d), the D-FINE hybrid encoder (RepNCSPELAN4 fusion
blocks, SCDown downsampling, lateral convs without activation; width 256), the D-FINE decoder
(6 layers, [3, 6, 3] points, ``reg_max`` 32, ``reg_scale`` 4) and the D-FINE losses (VFL, L1,
GIoU, FGL, DDF over the GO-LSD union of matches). The other sizes import ``model`` and change
what their YAML changes; ``deim.py`` turns any of them into its DEIM-D-FINE counterpart.
Parameters: see ``tests/test_deim_configs.py`` (exact official counts).
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling import (
    RTDETR,
    DFINETransformer,
    HGNetv2,
    HungarianMatcher,
    HybridEncoder,
    RTDETRCriterion,
)

model = L(RTDETR)(
    backbone=L(HGNetv2)(
        name="B4",
        out_indices=(1, 2, 3),  # official return_idx
        freeze_at=0,  # official freeze_at 0 with freeze_stem_only: the stem only
        freeze_norm=True,
        use_lab=False,
    ),
    encoder=L(HybridEncoder)(
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
        fpn_fusion="rep_ncsp_elan4",
        pan_fusion="rep_ncsp_elan4",
        lateral_act=False,
        downsample="scdown",
    ),
    decoder=L(DFINETransformer)(
        num_classes="${..num_classes}",
        hidden_dim=256,
        num_queries=300,
        feat_channels=[256, 256, 256],
        feat_strides="${..encoder.feat_strides}",
        num_levels=3,
        num_points=[3, 6, 3],
        nhead=8,
        num_layers=6,
        dim_feedforward=1024,
        dropout=0.0,
        activation="relu",
        mlp_act="relu",
        num_denoising=100,
        label_noise_ratio=0.5,
        box_noise_scale=1.0,
        eval_spatial_size=(640, 640),
        eval_idx=-1,
        cross_attn_method="default",
        query_select_method="default",
        reg_max=32,
        reg_scale=4.0,
        layer_scale=1,
    ),
    criterion=L(RTDETRCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2.0),
        weight_dict={"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_fgl": 0.15, "loss_ddf": 1.5},
        losses=["vfl", "boxes", "local"],
        alpha=0.75,
        gamma=2.0,
        reg_max="${..decoder.reg_max}",
        use_uni_set=True,
    ),
    num_classes=80,
    num_top_queries=300,
    pixel_mean=[0.0, 0.0, 0.0],
    pixel_std=[255.0, 255.0, 255.0],
    channels_last=None,
)
