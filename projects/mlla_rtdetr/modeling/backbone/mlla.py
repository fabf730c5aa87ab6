"""MLLA backbone (Han et al., "Demystify Mamba in Vision: A Linear Attention Perspective",
NeurIPS 2024) as a detectron2 ``Backbone``, and the MLLA ImageNet classifier.

One file for the model family, timm style; the block itself (RoPE, linear attention, gated block)
lives in :mod:`mlla_rtdetr.modeling.layers.mlla`, shared with the encoder placements.

* :class:`Stem`, :class:`PatchMerging`, :class:`MLLAStage`.
* :class:`MLLABackbone` (``res2..res5`` at strides 4/8/16/32, each with its own LayerNorm) and
  :class:`MLLAClassifier` (the ImageNet model: final norm + head).
* Variants MLLA-T/S/B (:data:`MLLA_VARIANTS`) and builders.

State-dict keys follow the official implementation (``patch_embed.*``, ``layers.{i}.blocks.{j}.*``,
``layers.{i}.downsample.conv.{0,1,2}.*``, ``norm{i}`` / ``norm`` + ``head``), so official checkpoints
load 1:1 apart from the derived RoPE tables (see ``checkpoint/mlla_converter.py``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as activation_checkpoint
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

from ..layers import (ConvNormAct, MLLABlock, as_memory_format_of, conv_norm_residual, downsample_in_row_bands,
                      init_mlla_weights, map_to_tokens, tokens_to_map)

__all__ = [
    "MLLA_VARIANTS",
    "Stem",
    "PatchMerging",
    "MLLAStage",
    "MLLABackbone",
    "MLLAClassifier",
    "build_mlla_backbone",
    "build_mlla_classifier",
    "mlla_t",
    "mlla_s",
    "mlla_b",
]

HW = Tuple[int, int]

#: Architecture of the published variants (stage-0 width, blocks per stage, heads per stage) and
#: the drop-path rate of the official ImageNet training (cfgs/mlla_*.yaml).
MLLA_VARIANTS: Dict[str, dict] = {
    "mlla_t": dict(embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16), drop_path_rate=0.2),
    "mlla_s": dict(embed_dim=64, depths=(3, 6, 21, 6), num_heads=(2, 4, 8, 16), drop_path_rate=0.3),
    "mlla_b": dict(embed_dim=96, depths=(3, 6, 21, 6), num_heads=(3, 6, 12, 24), drop_path_rate=0.5),
}


# ----------------------------------------------------------------------------------------------
# Stem, patch merging, stage
# ----------------------------------------------------------------------------------------------
class Stem(nn.Module):
    """Convolutional stem, stride 4: 3x3/2 conv, residual pair of 3x3 convs, 3x3/2 conv to 4C and
    1x1 conv to C (BatchNorm everywhere, ReLU except after the residual pair and the last conv).
    The image is zero-padded at the right/bottom to a multiple of 4."""

    patch_size = 4

    def __init__(self, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        half = embed_dim // 2
        self.conv1 = ConvNormAct(in_chans, half, 3, 2, act="relu")
        self.conv2 = nn.Sequential(
            ConvNormAct(half, half, 3, 1, act="relu"),
            ConvNormAct(half, half, 3, 1),
        )
        self.conv3 = nn.Sequential(
            ConvNormAct(half, embed_dim * 4, 3, 2, act="relu"),
            ConvNormAct(embed_dim * 4, embed_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        """x: (B, 3, H, W) -> tokens (B, ceil(H/4)*ceil(W/4), C) and their (h, w)."""
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
        x = self.conv1(x)
        x = conv_norm_residual(self.conv2[1], self.conv2[0](x), x)  # conv2(x) + x
        x = downsample_in_row_bands(x, self.conv3[0], post=self.conv3[1])  # = self.conv3(x)
        hw = (x.shape[2], x.shape[3])
        return map_to_tokens(x), hw


class PatchMerging(nn.Module):
    """MBConv-style downsampling C -> 2C (or ``out_dim``), stride 2: 1x1 conv to 8C + ReLU,
    depthwise 3x3/2 + ReLU, 1x1 conv to 2C + BatchNorm. Odd H or W is zero-padded by one
    row/column at the bottom/right (before the first conv), so the output is ceil(H/2) x ceil(W/2)."""

    def __init__(self, dim: int, ratio: float = 4.0, out_dim: Optional[int] = None):
        super().__init__()
        hidden = int(2 * dim * ratio)
        self.dim = dim
        self.out_dim = 2 * dim if out_dim is None else out_dim
        self.conv = nn.Sequential(
            ConvNormAct(dim, hidden, 1, bias=True, norm=None, act="relu"),
            ConvNormAct(hidden, hidden, 3, 2, groups=hidden, bias=True, norm=None, act="relu"),
            ConvNormAct(hidden, self.out_dim, 1, bias=True),
        )

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        """x: (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), out_dim) and the new (h, w)."""
        h, w = hw
        x = tokens_to_map(x, hw)
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        x = downsample_in_row_bands(x, self.conv[1], pre=self.conv[0], post=self.conv[2])  # = self.conv(x)
        return map_to_tokens(x), (x.shape[2], x.shape[3])


class MLLAStage(nn.Module):
    """``depth`` MLLA blocks followed by an optional :class:`PatchMerging`."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, drop_path: Sequence[float] = (),
                 downsample: bool = False, use_checkpoint: bool = False, act="gelu"):
        super().__init__()
        drop_path = list(drop_path) or [0.0] * depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            MLLABlock(dim, num_heads, mlp_ratio, qkv_bias, drop, drop_path[i], act=act)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, hw: HW):
        """x: (B, H*W, C) -> (stage output (B, H*W, C), (H, W), downsampled tokens or None, their hw)."""
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled() and x.requires_grad:
                x = activation_checkpoint.checkpoint(blk, x, hw, use_reentrant=False)
            else:
                x = blk(x, hw)
        if self.downsample is None:
            return x, hw, None, None
        x_down, hw_down = self.downsample(x, hw)
        return x, hw, x_down, hw_down


def _build_trunk(module: nn.Module, in_chans: int, embed_dim: int, depths: Sequence[int],
                 num_heads: Sequence[int], num_stages: int, mlp_ratio: float, qkv_bias: bool,
                 drop_rate: float, drop_path_rate: float, use_checkpoint: bool) -> None:
    """Adds ``patch_embed`` and ``layers`` (the first ``num_stages`` stages) to ``module``."""
    if len(depths) != len(num_heads):
        raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length.")
    module.patch_embed = Stem(in_chans, embed_dim)
    # Stochastic depth grows linearly over all blocks of the full model.
    dpr = [r.item() for r in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]  # not on meta
    module.layers = nn.ModuleList()
    for i in range(num_stages):
        module.layers.append(MLLAStage(
            dim=embed_dim * 2 ** i, depth=depths[i], num_heads=num_heads[i], mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, drop=drop_rate,
            drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
            downsample=i < num_stages - 1, use_checkpoint=use_checkpoint,
        ))


# ----------------------------------------------------------------------------------------------
# Backbone and classifier
# ----------------------------------------------------------------------------------------------
class MLLABackbone(Backbone):
    """MLLA detection backbone: any input size, outputs ``res2..res5`` (strides 4/8/16/32, widths
    C, 2C, 4C, 8C), each through its own LayerNorm (``norm{i}``), as NCHW maps.

    Only the stages up to the deepest requested output are built, and only the requested outputs
    get a norm, so no parameter is unused in training.
    """

    _STAGE_NAMES = ("res2", "res3", "res4", "res5")

    def __init__(self, embed_dim: int = 64, depths: Sequence[int] = (2, 4, 8, 4),
                 num_heads: Sequence[int] = (2, 4, 8, 16), mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 out_features: Sequence[str] = ("res3", "res4", "res5"), in_chans: int = 3,
                 use_checkpoint: bool = False, freeze_at: int = -1):
        """
        Args:
            embed_dim: width C of stage 0 (stage i has C * 2**i channels).
            depths, num_heads: blocks and attention heads per stage (4 stages).
            drop_path_rate: stochastic depth of the last block (linear from 0).
            out_features: subset of res2..res5.
            use_checkpoint: activation checkpointing of every block in training (saves memory).
            freeze_at: -1 trains everything; 0 freezes the stem; k >= 1 also freezes stages < k.
        """
        super().__init__()
        if len(depths) != 4:
            raise ValueError(f"MLLA has 4 stages, got depths {tuple(depths)}.")
        bad = [f for f in out_features if f not in self._STAGE_NAMES]
        if bad or not out_features:
            raise ValueError(f"out_features must be a non-empty subset of {self._STAGE_NAMES}, got "
                             f"{tuple(out_features)}.")
        self.embed_dim = embed_dim
        self.depths = tuple(depths)
        self.num_heads = tuple(num_heads)
        self._out_features = [n for n in self._STAGE_NAMES if n in out_features]
        self._out_indices = [self._STAGE_NAMES.index(n) for n in self._out_features]
        self.num_features = [embed_dim * 2 ** i for i in range(4)]
        self._out_feature_channels = {n: self.num_features[i] for n, i in
                                      zip(self._out_features, self._out_indices)}
        self._out_feature_strides = {n: 4 * 2 ** i for n, i in
                                     zip(self._out_features, self._out_indices)}
        num_stages = max(self._out_indices) + 1
        for i in self._out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        _build_trunk(self, in_chans, embed_dim, depths, num_heads, num_stages, mlp_ratio, qkv_bias,
                     drop_rate, drop_path_rate, use_checkpoint)
        self.apply(init_mlla_weights)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = -1) -> "MLLABackbone":
        """Freeze the stem (freeze_at >= 0) and the first ``freeze_at`` stages."""
        if freeze_at >= 0:
            modules = [self.patch_embed] + list(self.layers[:freeze_at])
            for m in modules:
                for p in m.parameters():
                    p.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (B, 3, H, W) -> {name: (B, C_i, ceil(H/s_i), ceil(W/s_i))} for the requested names, in
        the memory format of ``x`` (channels-last maps are views of the tokens: no copy)."""
        if x.dim() != 4:
            raise ValueError(f"MLLABackbone expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}.")
        tokens, hw = self.patch_embed(x)
        outs = {}
        for i, stage in enumerate(self.layers):
            out, out_hw, tokens, hw = stage(tokens, hw)
            if i in self._out_indices:
                y = getattr(self, f"norm{i}")(out)
                outs[self._STAGE_NAMES[i]] = as_memory_format_of(tokens_to_map(y, out_hw), x)
        return outs

    @property
    def size_divisibility(self) -> int:
        # The backbone itself takes any size (it pads like the official one); a detector fusing
        # its maps (x2 upsampling + concat) needs inputs padded to the largest output stride.
        return max(self._out_feature_strides.values())

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {n: ShapeSpec(channels=self._out_feature_channels[n],
                             stride=self._out_feature_strides[n]) for n in self._out_features}

    @torch.jit.ignore
    def no_weight_decay_keywords(self):
        return {"norm"}


class MLLAClassifier(nn.Module):
    """The MLLA ImageNet classifier: trunk, final LayerNorm ``norm``, token average, ``head``."""

    def __init__(self, embed_dim: int = 64, depths: Sequence[int] = (2, 4, 8, 4),
                 num_heads: Sequence[int] = (2, 4, 8, 16), num_classes: int = 1000,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, in_chans: int = 3, use_checkpoint: bool = False):
        super().__init__()
        _build_trunk(self, in_chans, embed_dim, depths, num_heads, len(depths), mlp_ratio, qkv_bias,
                     drop_rate, drop_path_rate, use_checkpoint)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_mlla_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> normalized final tokens (B, N, C_last)."""
        tokens, hw = self.patch_embed(x)
        for stage in self.layers:
            out, _, down, down_hw = stage(tokens, hw)
            tokens, hw = (out, hw) if down is None else (down, down_hw)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> logits (B, num_classes)."""
        return self.head(self.forward_features(x).mean(dim=1))


def _variant_kwargs(variant: str, **overrides) -> dict:
    if variant not in MLLA_VARIANTS:
        raise ValueError(f"Unknown MLLA variant '{variant}'; expected one of {sorted(MLLA_VARIANTS)}.")
    kwargs = dict(MLLA_VARIANTS[variant])
    kwargs.update(overrides)
    return kwargs


def build_mlla_backbone(variant: str = "mlla_t", **overrides) -> MLLABackbone:
    """An :class:`MLLABackbone` of a named variant; keyword overrides win (e.g. drop_path_rate).

    The default drop-path rate of a detection backbone is 0.1, as in the official detection
    configs (not the ImageNet rate of :data:`MLLA_VARIANTS`).
    """
    overrides.setdefault("drop_path_rate", 0.1)
    return MLLABackbone(**_variant_kwargs(variant, **overrides))


def build_mlla_classifier(variant: str = "mlla_t", **overrides) -> MLLAClassifier:
    """An :class:`MLLAClassifier` of a named variant (ImageNet drop-path rate unless overridden)."""
    return MLLAClassifier(**_variant_kwargs(variant, **overrides))


def mlla_t(**overrides) -> MLLABackbone:
    """MLLA-T backbone: C=64, depths 2-4-8-4, heads 2-4-8-16."""
    return build_mlla_backbone("mlla_t", **overrides)


def mlla_s(**overrides) -> MLLABackbone:
    """MLLA-S backbone: C=64, depths 3-6-21-6, heads 2-4-8-16."""
    return build_mlla_backbone("mlla_s", **overrides)


def mlla_b(**overrides) -> MLLABackbone:
    """MLLA-B backbone: C=96, depths 3-6-21-6, heads 3-6-12-24."""
    return build_mlla_backbone("mlla_b", **overrides)
