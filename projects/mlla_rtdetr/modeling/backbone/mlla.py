"""MLLA: Mamba-Like Linear Attention backbone (Han et al., "Demystify Mamba in Vision: A Linear
Attention Perspective", NeurIPS 2024), as a detectron2 ``Backbone``.

One file for the model family, timm style:

* :class:`RoPE2D` and :func:`rope_tables` - 2D rotary position embedding, recomputed (and cached)
  for the runtime feature size.
* :func:`mlla_linear_attention` / :class:`LinearAttention` - the published linear attention: ELU+1
  kernels, RoPE on q and k, normalizer from the un-rotated q and the mean of the un-rotated k,
  LePE (depthwise 3x3 on v).
* :class:`MLLABlock` - CPE, LayerNorm, input/gate projections, depthwise conv + SiLU, linear
  attention, SiLU gate, output projection, CPE, MLP. Shared with the MLLA intra-scale encoder block.
* :class:`Stem`, :class:`PatchMerging`, :class:`MLLAStage`.
* :class:`MLLABackbone` (detectron2 ``Backbone``; ``res2..res5`` at strides 4/8/16/32, each with its
  own LayerNorm) and :class:`MLLAClassifier` (the ImageNet model: final norm + head).
* Variants MLLA-T/S/B (:data:`MLLA_VARIANTS`) and builders.

State-dict keys follow the official implementation (``patch_embed.*``, ``layers.{i}.blocks.{j}.*``,
``layers.{i}.downsample.conv.{0,1,2}.*``, ``norm{i}`` / ``norm`` + ``head``), so official checkpoints
load 1:1 apart from the derived RoPE tables (see ``checkpoint/mlla_converter.py``).

Tokens are kept as ``(B, N, C)`` with ``N = H * W`` row-major; the same memory viewed as
``(B, C, H, W)`` is a channels-last image, so the depthwise convolutions need no copies.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as activation_checkpoint
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from timm.layers import DropPath, trunc_normal_

from ..common import get_activation

__all__ = [
    "MLLA_VARIANTS",
    "rope_tables",
    "apply_rope",
    "mlla_linear_attention",
    "RoPE2D",
    "LinearAttention",
    "Mlp",
    "MLLABlock",
    "ConvNormAct",
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
    "init_mlla_weights",
    "tokens_to_map",
    "map_to_tokens",
]

HW = Tuple[int, int]

#: Architecture of the published variants (stage-0 width, blocks per stage, heads per stage) and
#: the drop-path rate of the official ImageNet training (cfgs/mlla_*.yaml).
MLLA_VARIANTS: Dict[str, dict] = {
    "mlla_t": dict(embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16), drop_path_rate=0.2),
    "mlla_s": dict(embed_dim=64, depths=(3, 6, 21, 6), num_heads=(2, 4, 8, 16), drop_path_rate=0.3),
    "mlla_b": dict(embed_dim=96, depths=(3, 6, 21, 6), num_heads=(3, 6, 12, 24), drop_path_rate=0.5),
}


def tokens_to_map(x: torch.Tensor, hw: HW) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) view (channels-last memory when ``x`` is contiguous)."""
    return x.transpose(1, 2).unflatten(2, hw)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) (a view for channels-last memory)."""
    return x.flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------------------------
# 2D RoPE
# ----------------------------------------------------------------------------------------------
def _rope_tables_uncached(h: int, w: int, dim: int, base: float, device, dtype):
    k_max = dim // 4
    # Same float32 op sequence as the official tables, so the values are bit-identical.
    theta = 1 / (base ** (torch.arange(k_max, device=device) / k_max))
    rows = torch.arange(h, device=device).unsqueeze(-1) * theta  # (h, k_max)
    cols = torch.arange(w, device=device).unsqueeze(-1) * theta  # (w, k_max)
    angles = torch.cat(
        [rows[:, None, :].expand(h, w, k_max), cols[None, :, :].expand(h, w, k_max)], dim=-1
    )  # (h, w, dim/2): rows on the first half of the pairs, columns on the second
    cos, sin = torch.cos(angles), torch.sin(angles)
    # Channel pair (2j, 2j+1) = (re, im) of complex number j, rotated by angles[..., j]:
    #   re' = re*cos - im*sin,  im' = im*cos + re*sin  ->  x' = x*cos2 + swap(x)*sin2
    cos2 = cos.repeat_interleave(2, dim=-1).reshape(h * w, dim)
    sin2 = torch.stack([-sin, sin], dim=-1).reshape(h * w, dim)
    return cos2.to(dtype), sin2.to(dtype)


@functools.lru_cache(maxsize=64)
def _rope_tables_cached(h, w, dim, base, device, dtype):
    # Plain tensors even when first requested under inference_mode / no_grad.
    with torch.inference_mode(False), torch.no_grad():
        return _rope_tables_uncached(h, w, dim, base, device, dtype)


def rope_tables(h: int, w: int, dim: int, base: float = 10000, device=None,
                dtype=torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """RoPE cos / signed-sin tables for an ``h x w`` grid of ``dim``-channel tokens.

    Returns ``(cos2, sin2)``, each ``(h*w, dim)``, such that ``apply_rope(x, cos2, sin2)`` rotates
    channel pair ``(2j, 2j+1)`` of the token at ``(y, x)`` by ``angles[y, x, j]`` with
    ``angles[y, x] = concat(y * theta, x * theta)``, ``theta_k = 1 / base**(k / (dim/4))``.
    Cached per (size, dim, device, dtype) except while tracing / compiling.
    """
    if dim % 4:
        raise ValueError(f"2D RoPE needs a channel count divisible by 4, got {dim}.")
    device = torch.device("cpu") if device is None else torch.device(device)
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return _rope_tables_uncached(int(h), int(w), dim, base, device, dtype)
    return _rope_tables_cached(int(h), int(w), dim, base, device, dtype)


def apply_rope(x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """Rotate (B, N, C) tokens with tables from :func:`rope_tables` (N = h*w, C = dim)."""
    swapped = x.unflatten(-1, (x.shape[-1] // 2, 2)).flip(-1).flatten(-2)  # (im, re) per pair
    return x * cos2 + swapped * sin2


class RoPE2D(nn.Module):
    """2D rotary position embedding over ``dim`` channels, for any runtime (h, w).

    Holds no state (the official classification model stores the tables for its fixed input size
    as a buffer; they are a pure function of the size, so they are recomputed and cached here).
    """

    def __init__(self, dim: int, base: float = 10000):
        super().__init__()
        if dim % 4:
            raise ValueError(f"2D RoPE needs a channel count divisible by 4, got {dim}.")
        self.dim = dim
        self.base = base

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, H*W, dim) -> rotated (B, H*W, dim)."""
        cos2, sin2 = rope_tables(hw[0], hw[1], self.dim, self.base, x.device, x.dtype)
        return apply_rope(x, cos2, sin2)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}"


# ----------------------------------------------------------------------------------------------
# Linear attention
# ----------------------------------------------------------------------------------------------
def mlla_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_rope: torch.Tensor,
                          k_rope: torch.Tensor, num_heads: int, eps: float = 1e-6) -> torch.Tensor:
    """MLLA linear attention core, O(N) in the number of tokens.

    All inputs are (B, N, C) with positive kernels already applied (``q = elu(q)+1`` etc.); heads are
    contiguous channel groups of width C / num_heads. Per head::

        out_i = (q_rope_i . sum_j k_rope_j v_j^T / N) / (q_i . mean_j k_j + eps)

    i.e. the numerator uses the rotated q/k, the normalizer the un-rotated ones (as published).
    Returns (B, N, C).
    """
    n, c = q.shape[1], q.shape[2]
    d = c // num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, h, d); no batch size baked in (ONNX)
        return t.unflatten(-1, (num_heads, d))

    qh, kh, vh = heads(q), heads(k), heads(v)
    k_mean = kh.mean(dim=1)  # (B, h, d)
    z = 1.0 / (torch.einsum("bnhd,bhd->bnh", qh, k_mean) + eps)
    kv = torch.einsum("bnhd,bnhe->bhde", heads(k_rope), vh) * (1.0 / n)
    out = torch.einsum("bnhd,bhde->bnhe", heads(q_rope), kv)
    return (out * z.unsqueeze(-1)).flatten(-2)


class LinearAttention(nn.Module):
    """Linear attention with RoPE and LePE. q and k come from one projection; v is the input."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope_base: float = 10000):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}.")
        self.dim = dim
        self.num_heads = num_heads
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = RoPE2D(dim, base=rope_base)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, H*W, C) -> (B, H*W, C)."""
        n = x.shape[1]
        if n != hw[0] * hw[1]:
            raise ValueError(f"{n} tokens do not match the feature size {tuple(hw)}.")
        q, k = self.qk(x).chunk(2, dim=-1)
        # The kernel products and the normalizer are done in float32 even under autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            q = F.elu(q.float()) + 1.0
            k = F.elu(k.float()) + 1.0
            out = mlla_linear_attention(q, k, x.float(), self.rope(q, hw), self.rope(k, hw),
                                        self.num_heads)
        out = out.to(x.dtype)
        return out + map_to_tokens(self.lepe(tokens_to_map(x, hw)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"


# ----------------------------------------------------------------------------------------------
# Block
# ----------------------------------------------------------------------------------------------
class Mlp(nn.Module):
    """fc1 -> act -> drop -> fc2 -> drop on (..., C) tokens. ``act_layer``: a module class or a
    name understood by ``modeling.common.get_activation`` ("gelu" is the exact erf GELU)."""

    def __init__(self, in_features: int, hidden_features: int, act_layer=nn.GELU, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer() if isinstance(act_layer, type) else get_activation(act_layer)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class MLLABlock(nn.Module):
    """The MLLA block on (B, H*W, C) tokens of an (H, W) map.

    ``x = x + cpe1(x)``; ``x = x + out_proj(attn(silu(dwc(in_proj(norm1(x))))) * silu(act_proj(norm1(x))))``;
    ``x = x + cpe2(x)``; ``x = x + mlp(norm2(x))`` (stochastic depth on the two residual branches).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, drop_path: float = 0.0, act_layer=nn.GELU,
                 norm_layer=nn.LayerNorm, mlp_hidden_dim: Optional[int] = None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = norm_layer(dim)
        self.in_proj = nn.Linear(dim, dim)
        self.act_proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.SiLU()
        self.attn = LinearAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = norm_layer(dim)
        hidden = mlp_hidden_dim if mlp_hidden_dim is not None else int(dim * mlp_ratio)
        self.mlp = Mlp(dim, hidden, act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, H*W, C) -> (B, H*W, C)."""
        x = x + map_to_tokens(self.cpe1(tokens_to_map(x, hw)))
        shortcut = x
        x = self.norm1(x)
        gate = self.act(self.act_proj(x))
        x = map_to_tokens(self.act(self.dwc(tokens_to_map(self.in_proj(x), hw))))
        x = self.attn(x, hw)
        x = shortcut + self.drop_path(self.out_proj(x * gate))
        x = x + map_to_tokens(self.cpe2(tokens_to_map(x, hw)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"


# ----------------------------------------------------------------------------------------------
# Stem, patch merging, stage
# ----------------------------------------------------------------------------------------------
class ConvNormAct(nn.Module):
    """Conv2d -> optional BatchNorm2d (``.norm``) -> optional activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = True, norm: bool = True,
                 act_layer=nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(out_channels) if norm else None
        self.act = act_layer() if act_layer is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class Stem(nn.Module):
    """Convolutional stem, stride 4: 3x3/2 conv, residual pair of 3x3 convs, 3x3/2 conv to 4C and
    1x1 conv to C (BatchNorm everywhere, ReLU except after the residual pair and the last conv).
    The image is zero-padded at the right/bottom to a multiple of 4."""

    patch_size = 4

    def __init__(self, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        half = embed_dim // 2
        self.conv1 = ConvNormAct(in_chans, half, 3, 2, 1, bias=False)
        self.conv2 = nn.Sequential(
            ConvNormAct(half, half, 3, 1, 1, bias=False),
            ConvNormAct(half, half, 3, 1, 1, bias=False, act_layer=None),
        )
        self.conv3 = nn.Sequential(
            ConvNormAct(half, embed_dim * 4, 3, 2, 1, bias=False),
            ConvNormAct(embed_dim * 4, embed_dim, 1, bias=False, act_layer=None),
        )

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        """x: (B, 3, H, W) -> tokens (B, ceil(H/4)*ceil(W/4), C) and their (h, w)."""
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
        x = self.conv1(x)
        x = self.conv2(x) + x
        x = self.conv3(x)
        hw = (x.shape[2], x.shape[3])
        return map_to_tokens(x).contiguous(), hw


class PatchMerging(nn.Module):
    """MBConv-style downsampling C -> 2C, stride 2: 1x1 conv to 8C + ReLU, depthwise 3x3/2 + ReLU,
    1x1 conv to 2C + BatchNorm. Odd H or W is zero-padded by one row/column at the bottom/right
    (before the first conv), so the output is ceil(H/2) x ceil(W/2)."""

    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        hidden = int(2 * dim * ratio)
        self.dim = dim
        self.conv = nn.Sequential(
            ConvNormAct(dim, hidden, 1, norm=False),
            ConvNormAct(hidden, hidden, 3, 2, 1, groups=hidden, norm=False),
            ConvNormAct(hidden, 2 * dim, 1, act_layer=None),
        )

    def forward(self, x: torch.Tensor, hw: HW) -> Tuple[torch.Tensor, HW]:
        """x: (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C) and the new (h, w)."""
        h, w = hw
        x = tokens_to_map(x, hw)
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        x = self.conv(x)
        return map_to_tokens(x).contiguous(), (x.shape[2], x.shape[3])


class MLLAStage(nn.Module):
    """``depth`` MLLA blocks followed by an optional :class:`PatchMerging`."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, drop_path: Sequence[float] = (),
                 downsample: bool = False, use_checkpoint: bool = False, act_layer=nn.GELU):
        super().__init__()
        drop_path = list(drop_path) or [0.0] * depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            MLLABlock(dim, num_heads, mlp_ratio, qkv_bias, drop, drop_path[i], act_layer=act_layer)
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
    dpr = [r.item() for r in torch.linspace(0, drop_path_rate, sum(depths))]
    module.layers = nn.ModuleList()
    for i in range(num_stages):
        module.layers.append(MLLAStage(
            dim=embed_dim * 2 ** i, depth=depths[i], num_heads=num_heads[i], mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, drop=drop_rate,
            drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
            downsample=i < num_stages - 1, use_checkpoint=use_checkpoint,
        ))


def init_mlla_weights(m: nn.Module) -> None:
    """Official initialisation: trunc-normal(0.02) Linear weights, zero biases, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


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
        """x: (B, 3, H, W) -> {name: (B, C_i, ceil(H/s_i), ceil(W/s_i))} for the requested names."""
        if x.dim() != 4:
            raise ValueError(f"MLLABackbone expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}.")
        tokens, hw = self.patch_embed(x)
        outs = {}
        for i, stage in enumerate(self.layers):
            out, out_hw, tokens, hw = stage(tokens, hw)
            if i in self._out_indices:
                y = getattr(self, f"norm{i}")(out)
                outs[self._STAGE_NAMES[i]] = tokens_to_map(y, out_hw).contiguous()
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
