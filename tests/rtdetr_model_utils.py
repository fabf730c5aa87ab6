"""Tiny RT-DETR models for fast CPU tests of the decoder, criterion and meta-architecture."""

import torch

from mlla_rtdetr.modeling import (
    RTDETR,
    HungarianMatcher,
    HybridEncoder,
    PResNet,
    RTDETRCriterion,
    RTDETRTransformer,
)

WEIGHTS = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}


def tiny_decoder(
    num_classes=5, hidden_dim=32, num_layers=3, num_queries=20, num_points=(2, 3, 4), version="v2", **kw
) -> RTDETRTransformer:
    return RTDETRTransformer(
        num_classes=num_classes,
        hidden_dim=hidden_dim,
        num_queries=num_queries,
        feat_channels=[hidden_dim] * 3,
        feat_strides=[8, 16, 32],
        num_levels=kw.pop("num_levels", 3),
        num_points=list(num_points),
        nhead=4,
        num_layers=num_layers,
        dim_feedforward=64,
        num_denoising=kw.pop("num_denoising", 12),
        version=version,
        **kw,
    )


def tiny_criterion(num_classes=5, **kw) -> RTDETRCriterion:
    return RTDETRCriterion(
        num_classes,
        HungarianMatcher(2.0, 5.0, 2.0, alpha=0.25, gamma=2.0),
        WEIGHTS,
        ["vfl", "boxes"],
        alpha=0.75,
        gamma=2.0,
        **kw,
    )


def tiny_model(num_classes=5, hidden_dim=32, eval_size=None, version="v2") -> RTDETR:
    backbone = PResNet(depth=18, variant="d", base_width=8)
    chans = [s.channels for s in backbone.output_shape().values()]
    encoder = HybridEncoder(
        in_channels=chans,
        feat_strides=[8, 16, 32],
        hidden_dim=hidden_dim,
        nhead=4,
        dim_feedforward=64,
        expansion=0.5,
        depth_mult=0.34,
        eval_spatial_size=eval_size,
    )
    decoder = tiny_decoder(
        num_classes,
        hidden_dim,
        num_layers=2,
        version=version,
        eval_spatial_size=eval_size,
        num_points=(4, 4, 4) if version == "v1" else (2, 3, 4),
    )
    return RTDETR(backbone, encoder, decoder, tiny_criterion(num_classes), num_classes=num_classes, num_top_queries=30)


def random_feats(batch=2, hidden_dim=32, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, hidden_dim, size // s, size // s, generator=g) for s in (8, 16, 32)]


def make_targets(num_per_image=(2, 3), num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for n in num_per_image:
        cxcy = 0.25 + 0.5 * torch.rand(n, 2, generator=g)
        wh = 0.05 + 0.3 * torch.rand(n, 2, generator=g)
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=g), "boxes": torch.cat([cxcy, wh], 1)})
    return targets
