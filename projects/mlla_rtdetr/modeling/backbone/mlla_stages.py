"""MLLA stage blocks for any :class:`~mlla_rtdetr.modeling.backbone.staged.StagedBackbone`
(ResNet-vd, ...): registered in :data:`~mlla_rtdetr.modeling.backbone.staged.STAGE_BLOCKS`.

* ``"mlla"`` - an MLLA stage that *replaces* a backbone stage (hybrid backbone): a downsampling
  step C_in -> C_out (stride 2), then ``depth`` MLLA blocks at C_out
  (:class:`~mlla_rtdetr.modeling.backbone.mlla.MLLAStage` of the shared
  :class:`~mlla_rtdetr.modeling.layers.MLLABlock`, as in the MLLA backbone). Two downsamplers:

  - ``downsample="resnet"`` (default): ResNet-vd's own downsampling path, the projection shortcut
    of its stride-2 blocks (2x2 average pool, ceil mode, + 1x1 conv + BatchNorm;
    :func:`~mlla_rtdetr.modeling.backbone.resnet_vd.projection_shortcut`). It is the cheapest
    learnable stride-2 map that does not alias (the "d" tweak of ResNet-vd) and leaves spatial
    mixing to the MLLA blocks that follow, which have three depthwise 3x3 convs each (CPE, the
    gate branch, LePE) plus global attention.
  - ``downsample="patch_merging"``: MLLA's :class:`~mlla_rtdetr.modeling.backbone.mlla.PatchMerging`
    (1x1 conv to 8 C_in, depthwise 3x3/2, 1x1 conv to C_out). The stage is then exactly MLLA's
    ``layers.{i-1}.downsample`` + ``layers.{i}.blocks`` with MLLA's key names, so an MLLA
    ImageNet stage can initialise it - but its 8x expansion at the finer resolution costs 10%
    more GFLOPs and memory traffic: on CPU the hybrid R18 recipe costs 0.99x RT-DETR-R18's latency
    with it and 0.91x with the ResNet-vd step (model zoo README).

  A stride-1 stage (e.g. ResNet's res2) projects channels with a 1x1 conv + BatchNorm when they
  differ.
* ``"mlla_attention"`` - an attention-only MLLA layer *inserted after* a stage: the MLLA block's
  token mixer without its MLP - ``x = x + cpe(x)``, ``x = x + out_proj(linear_attention(
  silu(dwc(in_proj(LN(x))))) * silu(act_proj(LN(x))))`` with 2-D RoPE on the runtime grid and
  LePE - i.e. pre-norm gated linear attention with a residual. Its residual branches (``cpe1``,
  ``out_proj``) start at zero, so the layer is the identity at initialisation and inserting it into
  a pretrained backbone leaves the pretrained features unchanged until training moves it (the
  zero-initialised residual of non-local blocks, Wang et al. 2018).

Both work on (B, C, H, W) maps of any H x W (tokens are made with a flatten + transpose of the
channel axis, never a reshape of NCHW memory). Keys: ``downsample.*``, ``stage.blocks.{j}.*`` (MLLA
block names).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ...errors import ConfigError
from ..layers import init_mlla_weights, map_to_tokens, tokens_to_map
from .mlla import MLLAStage, PatchMerging
from .resnet_vd import projection_shortcut
from .staged import STAGE_BLOCKS

__all__ = ["MLLAMapStage", "build_mlla_stage", "build_mlla_attention"]

Rates = Union[float, Sequence[float]]


class MLLAMapStage(nn.Module):
    """Optional downsampling / projection, then ``depth`` MLLA blocks, on (B, C, H, W) maps.

    Args:
        in_channels, out_channels: channels of the input and output maps.
        stride: 2 (output ceil(H/2) x ceil(W/2)) or 1 (a 1x1 conv + BatchNorm when the channels
            differ, else nothing).
        downsample: the stride-2 step, "resnet" (ResNet-vd: 2x2 avg pool + 1x1 conv + BN) or
            "patch_merging" (MLLA's PatchMerging).
        depth: number of MLLA blocks.
        num_heads: attention heads (default ``out_channels // head_dim``, at least 1).
        head_dim: channels per head when ``num_heads`` is not given (MLLA-T: 32).
        mlp_ratio: MLP width of each block; 0 gives token-mixer-only blocks (attention layer).
        drop_path: stochastic depth, one rate or one per block.
        identity_init: zero the residual branches (``cpe1``, ``out_proj``; ``cpe2``, ``mlp.fc2``
            with an MLP) so that the blocks start as the identity.
        use_checkpoint: activation checkpointing of the blocks in training.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, depth: int = 1,
                 downsample: str = "resnet", num_heads: Optional[int] = None, head_dim: int = 32,
                 mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: Rates = 0.0, identity_init: bool = False,
                 use_checkpoint: bool = False):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"An MLLA stage needs depth >= 1, got {depth}.")
        if stride not in (1, 2):
            raise ConfigError(f"An MLLA stage downsamples by 1 or 2, got stride {stride}.")
        if downsample not in ("resnet", "patch_merging"):
            raise ConfigError(f"downsample must be 'resnet' or 'patch_merging', got '{downsample}'.")
        heads = num_heads if num_heads is not None else max(1, out_channels // head_dim)
        if heads < 1 or out_channels % heads:
            raise ConfigError(f"{out_channels} channels do not split into {heads} heads.")
        if out_channels % 4:
            raise ConfigError(f"2-D RoPE needs a channel count divisible by 4, got {out_channels}.")
        rates = [float(drop_path)] * depth if isinstance(drop_path, (int, float)) else [float(r) for r in drop_path]
        if len(rates) != depth:
            raise ConfigError(f"drop_path needs one rate per block ({depth}), got {rates}.")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        if stride == 2 and downsample == "patch_merging":
            self.downsample = PatchMerging(in_channels, out_dim=out_channels)
        elif stride == 2 or in_channels != out_channels:
            self.downsample = projection_shortcut(in_channels, out_channels, stride, "d", "BN")
        else:
            self.downsample = None
        self.stage = MLLAStage(out_channels, depth, heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                               drop_path=rates, downsample=False, use_checkpoint=use_checkpoint)
        self.stage.apply(init_mlla_weights)
        if identity_init:
            self.zero_residual_branches()

    @torch.no_grad()
    def zero_residual_branches(self) -> None:
        """Make every block the identity (its residual branches output zero)."""
        for block in self.stage.blocks:
            branches = [block.cpe1, block.out_proj] + ([block.cpe2, block.mlp.fc2] if block.has_mlp else [])
            for m in branches:
                nn.init.zeros_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MLLAMapStage expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}.")
        if isinstance(self.downsample, PatchMerging):
            tokens, hw = self.downsample(map_to_tokens(x), (x.shape[2], x.shape[3]))
        else:
            if self.downsample is not None:
                x = self.downsample(x)
            tokens, hw = map_to_tokens(x).contiguous(), (x.shape[2], x.shape[3])
        tokens, hw, _, _ = self.stage(tokens, hw)
        return tokens_to_map(tokens, hw).contiguous()

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


@STAGE_BLOCKS.register("mlla")
def build_mlla_stage(in_channels: int, out_channels: int, stride: int, depth: int, **cfg) -> MLLAMapStage:
    """An MLLA stage replacing a backbone stage (``depth`` defaults to the replaced stage's block
    count); ``cfg``: ``downsample``, ``num_heads``, ``head_dim``, ``mlp_ratio``, ``qkv_bias``,
    ``drop_path``, ``identity_init``, ``use_checkpoint``."""
    return MLLAMapStage(in_channels, out_channels, stride, depth, **cfg)


@STAGE_BLOCKS.register("mlla_attention")
def build_mlla_attention(in_channels: int, out_channels: int, stride: int, depth: int,
                         identity_init: bool = True, **cfg) -> MLLAMapStage:
    """The attention-only MLLA layer (token mixer, no MLP), identity at initialisation by default;
    inserted after a stage (``in == out``, stride 1). ``depth`` stacks several such layers."""
    if stride != 1 or in_channels != out_channels:
        raise ConfigError(
            f"mlla_attention keeps the map's shape; it cannot replace a stage ({in_channels} -> "
            f"{out_channels}, stride {stride}). Use it in insert_after, or 'mlla' in stage_blocks."
        )
    return MLLAMapStage(in_channels, out_channels, 1, depth, mlp_ratio=0.0, identity_init=identity_init, **cfg)
