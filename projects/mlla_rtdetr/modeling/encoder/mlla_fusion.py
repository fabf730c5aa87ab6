"""The MLLA fusion blocks of the hybrid encoder: the CCFF fusion blocks with MLLA blocks as their
bottlenecks instead of RepVGG blocks.

* ``"mlla"`` (RT-DETR's CSP layer): ``conv3(MLLA blocks(conv1(x)) + conv2(x))``; the CSP split, the
  1x1 convs and the outer structure are those of
  :class:`~mlla_rtdetr.modeling.encoder.fusion.CSPRepLayer`. Keys: ``bottlenecks.layers.{i}.*``.
* ``"mlla_elan"`` (D-FINE's CSP-ELAN block): :class:`~mlla_rtdetr.modeling.encoder.fusion.RepNCSPELAN4`
  (split, two CSP layers each followed by a 3x3 conv, 1x1 fusion of the four maps) whose two CSP
  layers have MLLA blocks as bottlenecks. Keys: ``cv2.0.bottlenecks.layers.{i}.*`` and
  ``cv3.0.bottlenecks.layers.{i}.*``; the rest keeps D-FINE's names.

The bottleneck stack is :class:`~mlla_rtdetr.modeling.encoder.mlla_intra_scale.MLLAIntraScale`
(the shared :class:`~mlla_rtdetr.modeling.layers.MLLABlock`: CPE, gated linear attention with 2-D
RoPE on the runtime grid and LePE, MLP) at the CSP hidden width.

Registered in :data:`~mlla_rtdetr.modeling.encoder.fusion.FUSION_BLOCKS`; select them per FPN /
PAN block with ``HybridEncoder(fpn_fusion=..., pan_fusion=...)``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

from .fusion import FUSION_BLOCKS, CSPRepLayer, RepNCSPELAN4, build_rep_ncsp_elan4
from .mlla_intra_scale import MLLAIntraScale

__all__ = ["build_mlla_fusion", "build_mlla_elan_fusion", "mlla_bottlenecks"]

Rates = Union[float, Sequence[float]]


def mlla_bottlenecks(num_layers: Optional[int], head_dim: int = 32, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                     drop_path: Rates = 0.0, use_checkpoint: bool = False) -> Callable[[int, int], MLLAIntraScale]:
    """The ``bottlenecks(hidden, num_blocks)`` factory of a CSP layer that builds ``num_layers``
    MLLA blocks (default: ``num_blocks``, the number of RepVGG blocks they replace) at the CSP
    hidden width, with ``max(1, hidden // head_dim)`` heads."""
    if head_dim < 1:
        raise ValueError(f"head_dim must be >= 1, got {head_dim}.")

    def build(hidden: int, num_blocks: int) -> MLLAIntraScale:
        heads = max(1, hidden // head_dim)
        if hidden % heads:
            raise ValueError(f"CSP hidden width {hidden} is not divisible into {heads} heads of ~{head_dim}.")
        depth = num_blocks if num_layers is None else int(num_layers)
        return MLLAIntraScale(hidden, heads, int(hidden * mlp_ratio), num_layers=depth, qkv_bias=qkv_bias,
                              drop_path=drop_path, use_checkpoint=use_checkpoint)

    return build


@FUSION_BLOCKS.register("mlla")
def build_mlla_fusion(in_channels: int, out_channels: int, num_blocks: int, expansion: float, act="silu",
                      num_layers: Optional[int] = None, **mlla_cfg) -> CSPRepLayer:
    """RT-DETR's CSP layer whose bottlenecks are ``num_layers`` MLLA blocks (default:
    ``num_blocks``, the number of RepVGG blocks it replaces).

    Args:
        act: activation of the CSP 1x1 convs (the MLLA blocks keep GELU in their MLP).
        mlla_cfg: ``head_dim`` (channels per head; heads = max(1, hidden // head_dim), MLLA-T uses
            32), ``mlp_ratio`` (MLP width relative to the hidden width), ``qkv_bias``,
            ``drop_path`` (one rate, or one per block), ``use_checkpoint``.
    """
    return CSPRepLayer(in_channels, out_channels, num_blocks, expansion=expansion, act=act,
                       bottlenecks=mlla_bottlenecks(num_layers, **mlla_cfg))


@FUSION_BLOCKS.register("mlla_elan")
def build_mlla_elan_fusion(in_channels: int, out_channels: int, num_blocks: int, expansion: float, act="silu",
                           num_layers: Optional[int] = None, **mlla_cfg) -> RepNCSPELAN4:
    """D-FINE's CSP-ELAN fusion block (``"rep_ncsp_elan4"``, same widths) whose two CSP layers have
    ``num_layers`` MLLA blocks as bottlenecks (default: ``num_blocks``); ``mlla_cfg`` as
    :func:`build_mlla_fusion`."""
    return build_rep_ncsp_elan4(in_channels, out_channels, num_blocks, expansion, act=act,
                                bottlenecks=mlla_bottlenecks(num_layers, **mlla_cfg))
