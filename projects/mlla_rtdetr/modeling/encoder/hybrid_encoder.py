"""RT-DETR hybrid encoder: input projections, intra-scale interaction (AIFI or another registered
block) on selected levels, and CCFF cross-scale fusion (top-down FPN + bottom-up PAN built from
fusion blocks: the official CSPRep layers of RepVGG blocks, or another registered block per
FPN / PAN block, e.g. CSP layers of MLLA blocks).

Module names follow the official RT-DETRv2 implementation (``input_proj.{i}.conv/norm``,
``encoder.{i}.layers.{j}``, ``lateral_convs``, ``fpn_blocks``, ``downsample_convs``,
``pan_blocks``); official v1 checkpoints (``input_proj.{i}.0/1``) are renamed by the converter.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct, dense_grad
from .fusion import FUSION_BLOCKS, CSPRepLayer, RepVggBlock
from .intra_scale import INTRA_SCALE_BLOCKS

__all__ = ["RepVggBlock", "CSPRepLayer", "HybridEncoder"]


def _per_block(spec, n: int, what: str) -> list:
    """One fusion-block spec per block: a single spec (name or mapping) is repeated."""
    if isinstance(spec, (str, Mapping)):
        return [spec] * n
    specs = list(spec)
    if len(specs) != n:
        raise ValueError(f"{what} needs one entry per block ({n}), got {specs}.")
    return specs


class InputProjection(nn.Sequential):
    """1x1 conv (no bias) + BatchNorm; keys ``conv.*`` / ``norm.*`` (official v2 naming)."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size=1, bias=False)
        self.norm = nn.BatchNorm2d(ch_out)


class SCDown(nn.Module):
    """D-FINE's downsampling (from YOLOv10): 1x1 ConvNorm to ``c2``, then a ``k`` x ``k``
    depthwise ConvNorm with ``stride``; no activation. (B, c1, H, W) -> (B, c2, H/s, W/s)."""

    def __init__(self, c1: int, c2: int, k: int, stride: int):
        super().__init__()
        self.cv1 = ConvNormAct(c1, c2, 1, 1)
        self.cv2 = ConvNormAct(c2, c2, k, stride, groups=c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class HybridEncoder(nn.Module):
    """RT-DETR hybrid encoder.

    Args:
        in_channels: channels of the input maps, finest first (e.g. [512, 1024, 2048]).
        feat_strides: their strides (e.g. [8, 16, 32]); consecutive levels must differ by x2.
        hidden_dim: width of every projected / output map.
        use_encoder_idx: levels that get an intra-scale block (official: [2], the stride-32 map).
        num_encoder_layers: layers per intra-scale block (0 disables intra-scale interaction).
        nhead, dim_feedforward, dropout, enc_act: parameters of the intra-scale block.
        attention: registry name of the intra-scale block ("softmax" = AIFI, "mlla", ...) or one
            name per entry of ``use_encoder_idx``.
        attention_cfg: extra keyword arguments for the block builder (dict, or one per level).
        expansion: hidden-width ratio of the CSPRep layers (0.5 for R18/R34/R50-m, 1.0 otherwise).
        depth_mult: number of RepVGG blocks per CSPRep layer is ``round(3 * depth_mult)``.
        fpn_fusion, pan_fusion: fusion block of the top-down (FPN) / bottom-up (PAN) path, by
            registry name (:data:`~mlla_rtdetr.modeling.encoder.fusion.FUSION_BLOCKS`: "csprep" =
            official, "mlla" = CSP layer of MLLA blocks) or ``{"name": ..., **cfg}``; one value for
            every block of the path or one per block. FPN block k produces level ``L-2-k`` (for 3
            levels: stride 16, then stride 8); PAN block k produces level ``k+1`` (stride 16, then 32).
        act: activation of the CCFF convs.
        lateral_act: whether the lateral 1x1 convs of the FPN use ``act`` (RT-DETR) or none (D-FINE).
        downsample: the PAN's stride-2 conv: "conv" (3x3 ConvNormAct with ``act``, RT-DETR) or
            "scdown" (D-FINE: a 1x1 conv then a 3x3 depthwise stride-2 conv, both with BN and no
            activation; keys ``downsample_convs.{i}.0.cv1`` / ``.cv2``).
        eval_spatial_size: (H, W) of eval images; the intra-scale position embedding for this size
            is precomputed (other sizes, and training, compute it on the fly).

    Input: list of maps (B, C_i, H_i, W_i) in ``feat_strides`` order, with H_i = 2 * H_{i+1}.
    Output: list of maps (B, hidden_dim, H_i, W_i), same order.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024, 2048),
        feat_strides: Sequence[int] = (8, 16, 32),
        hidden_dim: int = 256,
        use_encoder_idx: Sequence[int] = (2,),
        num_encoder_layers: int = 1,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        enc_act: str = "gelu",
        attention: Union[str, Sequence[str]] = "softmax",
        attention_cfg: Union[None, dict, Sequence[Optional[dict]]] = None,
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        act: str = "silu",
        eval_spatial_size: Optional[Sequence[int]] = None,
        fpn_fusion: Union[str, Mapping, Sequence[Union[str, Mapping]]] = "csprep",
        pan_fusion: Union[str, Mapping, Sequence[Union[str, Mapping]]] = "csprep",
        lateral_act: bool = True,
        downsample: str = "conv",
    ):
        super().__init__()
        in_channels, feat_strides, use_encoder_idx = list(in_channels), list(feat_strides), list(use_encoder_idx)
        if len(in_channels) != len(feat_strides) or len(in_channels) < 2:
            raise ValueError(
                f"in_channels {in_channels} and feat_strides {feat_strides} must have the same length (>= 2)."
            )
        for a, b in zip(feat_strides[:-1], feat_strides[1:]):
            if b != 2 * a:
                raise ValueError(f"feat_strides must double from level to level, got {feat_strides}.")
        bad = [i for i in use_encoder_idx if not 0 <= i < len(in_channels)]
        if bad:
            raise ValueError(f"use_encoder_idx {use_encoder_idx} out of range for {len(in_channels)} levels.")
        self.in_channels = in_channels
        self.feat_strides = feat_strides
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = use_encoder_idx
        self.num_encoder_layers = num_encoder_layers
        self.eval_spatial_size = list(eval_spatial_size) if eval_spatial_size else None
        self.out_channels = [hidden_dim] * len(in_channels)
        self.out_strides = feat_strides

        self.input_proj = nn.ModuleList(InputProjection(c, hidden_dim) for c in in_channels)

        names = [attention] * len(use_encoder_idx) if isinstance(attention, str) else list(attention)
        cfgs = (
            [dict(attention_cfg or {}) for _ in use_encoder_idx]
            if attention_cfg is None or isinstance(attention_cfg, Mapping)
            else [dict(c or {}) for c in attention_cfg]
        )
        if len(names) != len(use_encoder_idx) or len(cfgs) != len(use_encoder_idx):
            raise ValueError(
                f"attention ({names}) and attention_cfg need one entry per use_encoder_idx ({use_encoder_idx})."
            )
        self.attention = names
        self.encoder = nn.ModuleList(
            INTRA_SCALE_BLOCKS.get(name)(
                hidden_dim, nhead, dim_feedforward, dropout, enc_act, num_encoder_layers, **cfg
            )
            for name, cfg in zip(names, cfgs)
        )
        if self.eval_spatial_size is not None:
            for block, idx in zip(self.encoder, use_encoder_idx):
                if hasattr(block, "set_eval_spatial_size"):
                    s = feat_strides[idx]
                    block.set_eval_spatial_size((self.eval_spatial_size[0] // s, self.eval_spatial_size[1] // s))

        num_blocks = round(3 * depth_mult)
        levels = len(in_channels)
        # Top-down FPN: from the coarsest level to the finest.
        if downsample not in ("conv", "scdown"):
            raise ValueError(f"downsample must be 'conv' or 'scdown', got {downsample!r}.")
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(hidden_dim, hidden_dim, 1, 1, act=act if lateral_act else None) for _ in range(levels - 1)
        )
        self.fpn_fusion = _per_block(fpn_fusion, levels - 1, "fpn_fusion")
        self.pan_fusion = _per_block(pan_fusion, levels - 1, "pan_fusion")
        self.fpn_blocks = nn.ModuleList(
            FUSION_BLOCKS.build(spec, hidden_dim * 2, hidden_dim, num_blocks, expansion, act)
            for spec in self.fpn_fusion
        )
        # Bottom-up PAN.
        self.downsample_convs = nn.ModuleList(
            ConvNormAct(hidden_dim, hidden_dim, 3, 2, act=act) if downsample == "conv" else
            nn.Sequential(SCDown(hidden_dim, hidden_dim, 3, 2))
            for _ in range(levels - 1)
        )
        self.pan_blocks = nn.ModuleList(
            FUSION_BLOCKS.build(spec, hidden_dim * 2, hidden_dim, num_blocks, expansion, act)
            for spec in self.pan_fusion
        )

    def _check_inputs(self, feats: Sequence[torch.Tensor]) -> None:
        if len(feats) != len(self.in_channels):
            raise ValueError(f"HybridEncoder expects {len(self.in_channels)} maps, got {len(feats)}.")
        for i, (f, c) in enumerate(zip(feats, self.in_channels)):
            if f.dim() != 4 or f.shape[1] != c:
                raise ValueError(f"Map {i} must be (B, {c}, H, W), got {tuple(f.shape)}.")
        for i in range(len(feats) - 1):
            fine, coarse = feats[i].shape[-2:], feats[i + 1].shape[-2:]
            if fine[0] != 2 * coarse[0] or fine[1] != 2 * coarse[1]:
                raise ValueError(
                    f"Map {i} ({tuple(fine)}) must be exactly twice map {i + 1} ({tuple(coarse)}): pad the "
                    f"input image to a multiple of {self.feat_strides[-1]} (backbone.size_divisibility)."
                )

    def forward(self, feats: Union[Sequence[torch.Tensor], Dict[str, torch.Tensor]]) -> List[torch.Tensor]:
        if isinstance(feats, Mapping):
            feats = list(feats.values())
        self._check_inputs(feats)
        proj = [p(f) for p, f in zip(self.input_proj, feats)]

        if self.num_encoder_layers > 0:
            for block, idx in zip(self.encoder, self.use_encoder_idx):
                proj[idx] = block(proj[idx])

        levels = len(self.in_channels)
        inner_outs = [proj[-1]]
        for idx in range(levels - 1, 0, -1):
            k = levels - 1 - idx
            high = self.lateral_convs[k](inner_outs[0])
            inner_outs[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            inner_outs.insert(0, self.fpn_blocks[k](torch.cat([dense_grad(up), dense_grad(proj[idx - 1])], dim=1)))

        outs = [inner_outs[0]]
        for idx in range(levels - 1):
            down = self.downsample_convs[idx](outs[-1])
            outs.append(self.pan_blocks[idx](torch.cat([dense_grad(down), dense_grad(inner_outs[idx + 1])], dim=1)))
        return outs

    def deploy(self) -> "HybridEncoder":
        """Fold every RepVGG block into a single 3x3 conv (same eval outputs, fewer ops)."""
        for m in self.modules():
            if isinstance(m, RepVggBlock):
                m.deploy()
        return self
