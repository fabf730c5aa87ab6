"""The MLLA block (Han et al., "Demystify Mamba in Vision: A Linear Attention Perspective",
NeurIPS 2024) and its parts, shared by the MLLA backbone and every MLLA placement in the detector.

* :func:`rope_tables`, :func:`apply_rope`, :class:`RoPE2D` - 2D rotary position embedding,
  recomputed (and cached) for the runtime feature size.
* :func:`mlla_linear_attention`, :class:`LinearAttention` - ELU+1 kernels, RoPE on q and k,
  normalizer from the un-rotated q and the mean of the un-rotated k, LePE (depthwise 3x3 on v).
* :class:`MLLABlock` - CPE, LayerNorm, input/gate projections, depthwise conv + SiLU, linear
  attention, SiLU gate, output projection, CPE, MLP.
* :func:`tokens_to_map`, :func:`map_to_tokens` - (B, H*W, C) row-major tokens <-> (B, C, H, W).
* :func:`init_mlla_weights` - the official initialisation.

Key names follow the official implementation (``cpe1``, ``norm1``, ``in_proj``, ``act_proj``, ``dwc``,
``attn.qk``, ``attn.lepe``, ``out_proj``, ``cpe2``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``).

Tokens are kept as ``(B, N, C)`` with ``N = H * W`` row-major; the same memory viewed as
``(B, C, H, W)`` is a channels-last image, so the depthwise convolutions need no copies.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from .activation import ActLike
from .fused import Linear, conv2d, linear
from .mlp import Mlp

__all__ = [
    "rope_tables",
    "apply_rope",
    "RoPE2D",
    "elu_plus_one",
    "mlla_linear_attention",
    "LinearAttention",
    "MLLABlock",
    "tokens_to_map",
    "map_to_tokens",
    "init_mlla_weights",
]

HW = Tuple[int, int]


def tokens_to_map(x: torch.Tensor, hw: HW) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) view; channels-last memory when ``x`` is contiguous.

    Built as reshape + permute so that every stride is the channels-last one even for B = 1 (a
    transposed view gives the batch dimension a stride that makes convolutions fall back to NCHW
    and copy their input), with the batch size read from ``x`` (kept dynamic in ONNX exports).
    """
    return x.reshape(x.shape[0], hw[0], hw[1], x.shape[-1]).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) contiguous tokens (a view for channels-last memory)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


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


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() \
        or torch.onnx.is_in_onnx_export()


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
    """Rotate (B, N, ..., C) tokens with tables from :func:`rope_tables` (N = h*w, C = dim)."""
    cos2, sin2 = (t.reshape(t.shape[0], *([1] * (x.dim() - 3)), t.shape[-1]) for t in (cos2, sin2))
    swapped = x.unflatten(-1, (x.shape[-1] // 2, 2)).flip(-1).flatten(-2)  # (im, re) per pair
    return x * cos2 + swapped * sin2


@functools.lru_cache(maxsize=64)
def _rope_rotations_cached(h, w, dim, base, device, dtype):
    with torch.inference_mode(False), torch.no_grad():
        cos2, sin2 = _rope_tables_uncached(h, w, dim, base, device, dtype)
        return torch.stack([cos2[:, 0::2], sin2[:, 1::2]], dim=-1).contiguous()  # (h*w, dim/2, 2)


def _rotate_complex(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """x (B, N, ..., C) * rotations (N, C/2, 2), channel pairs as complex numbers: one pass over x
    (the official MLLA formulation) instead of a pair swap, two products and a sum."""
    xc = torch.view_as_complex(x.unflatten(-1, (x.shape[-1] // 2, 2)))
    rc = torch.view_as_complex(rotations).reshape(rotations.shape[0], *([1] * (x.dim() - 3)), -1)
    return torch.view_as_real(xc * rc).flatten(-2)


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
        """x: (B, H*W, ..., dim) -> rotated, same shape (every vector of a token gets its rotation)."""
        if _exporting() or x.dtype not in (torch.float32, torch.float64):  # complex-free formula for ONNX
            cos2, sin2 = rope_tables(hw[0], hw[1], self.dim, self.base, x.device, x.dtype)
            return apply_rope(x, cos2, sin2)
        rotations = _rope_rotations_cached(int(hw[0]), int(hw[1]), self.dim, self.base, x.device, x.dtype)
        return _rotate_complex(x, rotations)

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
    out = out.mul_(z.unsqueeze(-1)) if not torch.is_grad_enabled() else out * z.unsqueeze(-1)
    return out.flatten(-2)


def elu_plus_one(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """The positive kernel ``elu(x) + 1``, with the same value and gradient; ``inplace`` overwrites
    ``x`` (only where no gradient flows).

    On CPU it is computed as ``exp(x - relu(x)) + relu(x)`` (= ``exp(min(x, 0)) + max(x, 0)``, also
    at ``x = 0`` for the gradient): PyTorch's CPU ELU goes through a scalar ``expm1`` and is ~8x
    slower than the vectorized ``exp``.
    """
    if x.device.type != "cpu":
        return F.elu(x, inplace=inplace).add_(1.0)
    pos = F.relu(x)
    if inplace:
        return x.sub_(pos).exp_().add_(pos)
    return torch.exp(x - pos) + pos


class LinearAttention(nn.Module):
    """Linear attention with RoPE and LePE. q and k come from one projection; v is the input."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope_base: float = 10000):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}.")
        self.dim = dim
        self.num_heads = num_heads
        self.qk = Linear(dim, dim * 2, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = RoPE2D(dim, base=rope_base)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, H*W, C) -> (B, H*W, C)."""
        n = x.shape[1]
        if n != hw[0] * hw[1]:
            raise ValueError(f"{n} tokens do not match the feature size {tuple(hw)}.")
        qk = self.qk(x)
        # The kernel products and the normalizer are done in float32 even under autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            qk = qk.float()
            qk = elu_plus_one(qk, inplace=not torch.is_grad_enabled()).unflatten(-1, (2, self.dim))  # q, k
            q, k = qk.unbind(2)
            q_rope, k_rope = self.rope(qk, hw).unbind(2)  # one rotation pass for both
            out = mlla_linear_attention(q, k, x.float(), q_rope, k_rope, self.num_heads)
        out = out.to(x.dtype)
        return map_to_tokens(conv2d(self.lepe, tokens_to_map(x, hw), residual=tokens_to_map(out, hw)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"


# ----------------------------------------------------------------------------------------------
# Block
# ----------------------------------------------------------------------------------------------
class MLLABlock(nn.Module):
    """The MLLA block on (B, H*W, C) tokens of an (H, W) map.

    ``x = x + cpe1(x)``; ``x = x + out_proj(attn(silu(dwc(in_proj(norm1(x))))) * silu(act_proj(norm1(x))))``;
    ``x = x + cpe2(x)``; ``x = x + mlp(norm2(x))`` (stochastic depth on the two residual branches).

    With an MLP width of 0 (``mlp_ratio=0`` or ``mlp_hidden_dim=0``) the block is its token mixer
    only: the first two lines (CPE, gated linear attention with RoPE and LePE, residual), without
    ``cpe2``, ``norm2`` and ``mlp``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, drop_path: float = 0.0, act: ActLike = "gelu",
                 norm_layer=nn.LayerNorm, mlp_hidden_dim: Optional[int] = None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = norm_layer(dim)
        self.in_proj = Linear(dim, dim)
        self.act_proj = Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.SiLU()
        self.attn = LinearAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.out_proj = Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        hidden = mlp_hidden_dim if mlp_hidden_dim is not None else int(dim * mlp_ratio)
        if hidden < 0:
            raise ValueError(f"MLP width must be >= 0 (0: token mixer only), got {hidden}.")
        self.has_mlp = hidden > 0
        if self.has_mlp:
            self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
            self.norm2 = norm_layer(dim)
            self.mlp = Mlp(dim, hidden, act=act, drop=drop)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, H*W, C) -> (B, H*W, C).

        At inference on CPU the convolutions and projections run as oneDNN kernels with the
        activation and the residual fused (:mod:`.fused`); the result is the same.
        """
        x = _add_dw_conv(self.cpe1, x, hw)
        shortcut = x
        x = self.norm1(x)
        gate = linear(self.act_proj, x, self.act)
        x = map_to_tokens(conv2d(self.dwc, tokens_to_map(self.in_proj(x), hw), self.act))
        x = self.attn(x, hw) * gate
        stochastic = self.training and isinstance(self.drop_path, DropPath)
        x = shortcut + self.drop_path(self.out_proj(x)) if stochastic else linear(self.out_proj, x, residual=shortcut)
        if not self.has_mlp:
            return x
        x = _add_dw_conv(self.cpe2, x, hw)
        if stochastic:
            return x + self.drop_path(self.mlp(self.norm2(x)))
        return self.mlp(self.norm2(x), residual=x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}" + ("" if self.has_mlp else ", token mixer only")


def _add_dw_conv(conv: nn.Conv2d, x: torch.Tensor, hw: HW) -> torch.Tensor:
    """Convolutional position encoding ``x + conv(x)`` on (B, H*W, C) tokens (one fused kernel at
    inference)."""
    m = tokens_to_map(x, hw)
    return map_to_tokens(conv2d(conv, m, residual=m))


def init_mlla_weights(m: nn.Module) -> None:
    """Official initialisation: trunc-normal(0.02) Linear weights, zero biases, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
