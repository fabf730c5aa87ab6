"""The "mlla" fusion block of the hybrid encoder: the CCFF CSP layer with MLLA blocks as its
bottlenecks instead of RepVGG blocks.

``conv3(MLLA blocks(conv1(x)) + conv2(x))``: the CSP split, the 1x1 convs and the outer structure
are those of :class:`~mlla_rtdetr.modeling.encoder.fusion.CSPRepLayer`; the bottleneck stack is
:class:`~mlla_rtdetr.modeling.encoder.mlla_intra_scale.MLLAIntraScale` (the shared
:class:`~mlla_rtdetr.modeling.layers.MLLABlock`: CPE, gated linear attention with 2-D RoPE on the
runtime grid and LePE, MLP) at the CSP hidden width. Keys: ``bottlenecks.layers.{i}.*``.

Registered in :data:`~mlla_rtdetr.modeling.encoder.fusion.FUSION_BLOCKS` as ``"mlla"``; select it per
FPN / PAN block with ``HybridEncoder(fpn_fusion=..., pan_fusion=...)``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from .fusion import FUSION_BLOCKS, CSPRepLayer
from .mlla_intra_scale import MLLAIntraScale

__all__ = ["build_mlla_fusion"]


@FUSION_BLOCKS.register("mlla")
def build_mlla_fusion(in_channels: int, out_channels: int, num_blocks: int, expansion: float, act="silu",
                      num_layers: Optional[int] = None, head_dim: int = 32, mlp_ratio: float = 4.0,
                      qkv_bias: bool = True, drop_path: Union[float, Sequence[float]] = 0.0,
                      use_checkpoint: bool = False) -> CSPRepLayer:
    """CSP layer whose bottlenecks are ``num_layers`` MLLA blocks (default: ``num_blocks``, the
    number of RepVGG blocks it replaces).

    Args:
        act: activation of the CSP 1x1 convs (the MLLA blocks keep GELU in their MLP).
        head_dim: channels per attention head; heads = max(1, hidden // head_dim) (MLLA-T uses 32).
        mlp_ratio: MLP width of each block relative to the hidden width.
        drop_path: stochastic depth (one rate, or one per block).
    """
    depth = num_blocks if num_layers is None else int(num_layers)
    if head_dim < 1:
        raise ValueError(f"head_dim must be >= 1, got {head_dim}.")

    def mlla_bottlenecks(hidden: int, _num_blocks: int) -> MLLAIntraScale:
        heads = max(1, hidden // head_dim)
        if hidden % heads:
            raise ValueError(f"CSP hidden width {hidden} is not divisible into {heads} heads of ~{head_dim}.")
        return MLLAIntraScale(hidden, heads, int(hidden * mlp_ratio), num_layers=depth, qkv_bias=qkv_bias,
                              drop_path=drop_path, use_checkpoint=use_checkpoint)

    return CSPRepLayer(in_channels, out_channels, num_blocks, expansion=expansion, act=act,
                       bottlenecks=mlla_bottlenecks)
