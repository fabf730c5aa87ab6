"""The "mlla" intra-scale block of the hybrid encoder: MLLA blocks instead of AIFI's softmax
self-attention.

Each layer is the shared :class:`~mlla_rtdetr.modeling.layers.MLLABlock` (linear
attention with RoPE and LePE, SiLU gate, depthwise conv, CPE, MLP), so the cost is linear in the
number of tokens and the block can run on the stride-16 and stride-8 maps as well. RoPE, LePE and
the convolutional position encodings carry position, so no sin-cos embedding is added.

Registered in :data:`~mlla_rtdetr.modeling.encoder.intra_scale.INTRA_SCALE_BLOCKS` as ``"mlla"``;
select it per level with ``HybridEncoder(attention=["mlla", ...])``.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from ..layers import MLLABlock, as_memory_format_of, init_mlla_weights, map_to_tokens, tokens_to_map
from .intra_scale import INTRA_SCALE_BLOCKS

__all__ = ["MLLAIntraScale", "build_mlla_intra_scale"]


class MLLAIntraScale(nn.Module):
    """``num_layers`` MLLA blocks over one feature map. Keys: ``layers.{i}.*``.

    Input / output: (B, C, H, W) with C = ``dim``; any H, W.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, num_layers: int = 1,
                 dropout: float = 0.0, activation="gelu", qkv_bias: bool = True,
                 drop_path: Union[float, Sequence[float]] = 0.0, use_checkpoint: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        if isinstance(drop_path, (int, float)):
            drop_path = [float(drop_path)] * num_layers
        if len(drop_path) != num_layers:
            raise ValueError(f"drop_path needs one rate per layer ({num_layers}), got {list(drop_path)}.")
        self.dim = dim
        self.num_layers = num_layers
        self.use_checkpoint = use_checkpoint
        self.layers = nn.ModuleList(
            MLLABlock(dim, num_heads, qkv_bias=qkv_bias, drop=dropout, drop_path=drop_path[i],
                      act=activation, mlp_hidden_dim=ffn_dim)
            for i in range(num_layers)
        )
        self.apply(init_mlla_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W) in the memory format of ``x``."""
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise ValueError(f"MLLAIntraScale expects (B, {self.dim}, H, W), got {tuple(x.shape)}.")
        hw = (x.shape[2], x.shape[3])
        tokens = map_to_tokens(x)
        for layer in self.layers:
            if self.use_checkpoint and torch.is_grad_enabled() and tokens.requires_grad:
                tokens = torch.utils.checkpoint.checkpoint(layer, tokens, hw, use_reentrant=False)
            else:
                tokens = layer(tokens, hw)
        return as_memory_format_of(tokens_to_map(tokens, hw), x)


@INTRA_SCALE_BLOCKS.register("mlla")
def build_mlla_intra_scale(dim, num_heads, ffn_dim, dropout, activation, num_layers, qkv_bias=True,
                           drop_path=0.0, use_checkpoint=False) -> MLLAIntraScale:
    """Builder for the registry (same signature as the "softmax" AIFI builder).

    ``attention_cfg`` may set ``qkv_bias``, ``drop_path`` (float or one rate per layer) and
    ``use_checkpoint``.
    """
    return MLLAIntraScale(dim, num_heads, ffn_dim, num_layers=num_layers, dropout=dropout,
                          activation=activation, qkv_bias=qkv_bias, drop_path=drop_path,
                          use_checkpoint=use_checkpoint)
