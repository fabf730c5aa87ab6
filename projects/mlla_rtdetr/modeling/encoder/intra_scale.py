"""Registry of intra-scale interaction blocks used by :class:`HybridEncoder`, and the
"softmax" block: AIFI, the official RT-DETR transformer encoder with a 2D sin-cos position
embedding.

A builder is registered under a name and called as::

    builder(dim, num_heads, ffn_dim, dropout, activation, num_layers, **attention_cfg)

It returns a module mapping (B, C, H, W) -> (B, C, H, W). Other blocks (e.g. "mlla" in
``mlla_intra_scale.py``) register themselves the same way::

    @INTRA_SCALE_BLOCKS.register("mlla")
    def build_mlla_block(dim, num_heads, ffn_dim, dropout, activation, num_layers, **cfg): ...
"""
from __future__ import annotations

import copy
from typing import Optional, Tuple

import torch
from torch import nn

from ..layers import Linear, Registry, as_memory_format_of, get_activation, map_to_tokens, tokens_to_map

__all__ = [
    "INTRA_SCALE_BLOCKS",
    "build_2d_sincos_position_embedding",
    "TransformerEncoderLayer",
    "AIFI",
]


#: name -> builder of an intra-scale block (see the module docstring for the signature).
INTRA_SCALE_BLOCKS = Registry("INTRA_SCALE_BLOCKS")


def build_2d_sincos_position_embedding(
    h: int, w: int, embed_dim: int = 256, temperature: float = 10000.0
) -> torch.Tensor:
    """2D sin-cos position embedding of the official RT-DETR encoder, shape (1, h*w, embed_dim).

    For row-major token t = r*w + c the official code uses a = t // h and b = t % h (it builds
    the grid with the width axis outermost); on square maps a is the row and b the column. The
    embedding is concat(sin(a*omega), cos(a*omega), sin(b*omega), cos(b*omega)) with
    omega_k = 1 / temperature**(k / (embed_dim/4)). Computed in float32.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim must be divisible by 4 for the 2D sin-cos embedding, got {embed_dim}.")
    pos_dim = embed_dim // 4
    grid_w, grid_h = torch.meshgrid(
        torch.arange(int(w), dtype=torch.float32), torch.arange(int(h), dtype=torch.float32), indexing="ij"
    )
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    out_w = grid_w.flatten()[:, None] * omega[None]
    out_h = grid_h.flatten()[:, None] * omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (official key names: ``self_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``). Tokens (B, N, C) -> (B, N, C); the position embedding
    is added to queries and keys only."""

    def __init__(self, d_model, nhead, dim_feedforward=1024, dropout=0.0, activation="gelu", normalize_before=False):
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation(activation)

    def forward(self, src: torch.Tensor, pos_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        residual = src
        if self.normalize_before:
            src = self.norm1(src)
        q = k = src if pos_embed is None else src + pos_embed
        src, _ = self.self_attn(q, k, value=src, need_weights=False)
        src = residual + self.dropout1(src)
        if not self.normalize_before:
            src = self.norm1(src)

        residual = src
        if self.normalize_before:
            src = self.norm2(src)
        src = self.linear2(self.dropout(self.activation(self.linear1(src))))
        src = residual + self.dropout2(src)
        if not self.normalize_before:
            src = self.norm2(src)
        return src


class AIFI(nn.Module):
    """Attention-based intra-scale feature interaction: ``num_layers`` transformer encoder layers
    over the flattened map with a 2D sin-cos position embedding for the actual (H, W).

    Official key names: ``layers.{i}.*``. Input/output (B, C, H, W).
    """

    def __init__(self, encoder_layer: nn.Module, num_layers: int, pe_temperature: float = 10000.0):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.pe_temperature = pe_temperature
        self._cached_size: Optional[Tuple[int, int]] = None

    def set_eval_spatial_size(self, hw: Tuple[int, int]) -> None:
        """Precompute the eval-size position embedding as a non-persistent buffer (official
        behaviour); any other size is computed on the fly."""
        dim = self.layers[0].linear1.in_features if self.num_layers else 0
        if not dim:
            return
        self.register_buffer(
            "pos_embed", build_2d_sincos_position_embedding(hw[0], hw[1], dim, self.pe_temperature), persistent=False
        )
        self._cached_size = (int(hw[0]), int(hw[1]))

    def position_embedding(self, h: int, w: int, c: int, ref: torch.Tensor) -> torch.Tensor:
        """(1, h*w, c) embedding on ``ref``'s device and dtype."""
        if not self.training and self._cached_size == (h, w):
            pos = self.pos_embed
        else:
            pos = build_2d_sincos_position_embedding(h, w, c, self.pe_temperature)
        return pos.to(device=ref.device, dtype=ref.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W) in the memory format of ``x``."""
        _, c, h, w = x.shape
        tokens = map_to_tokens(x)
        pos = self.position_embedding(h, w, c, tokens)
        for layer in self.layers:
            tokens = layer(tokens, pos_embed=pos)
        return as_memory_format_of(tokens_to_map(tokens, (h, w)), x)


@INTRA_SCALE_BLOCKS.register("softmax")
def build_aifi(dim, num_heads, ffn_dim, dropout, activation, num_layers, pe_temperature=10000.0, normalize_before=False):
    """Builder of the official softmax-attention AIFI block."""
    layer = TransformerEncoderLayer(
        dim, num_heads, dim_feedforward=ffn_dim, dropout=dropout, activation=activation,
        normalize_before=normalize_before,
    )
    return AIFI(layer, num_layers, pe_temperature=pe_temperature)
