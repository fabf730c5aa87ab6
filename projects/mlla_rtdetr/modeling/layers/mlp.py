"""Token MLPs. Two key layouts exist because two families of official checkpoints use them."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .activation import ActLike, get_activation
from .fused import Linear, linear

__all__ = ["MLP", "Mlp"]


class MLP(nn.Module):
    """``num_layers`` Linear layers with an activation between them: the RT-DETR box/query heads
    (official keys ``layers.{i}.*``). (..., input_dim) -> (..., output_dim)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, act: ActLike = "relu"):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = linear(layer, x, self.act if i < self.num_layers - 1 else None)
        return x


class Mlp(nn.Module):
    """Transformer FFN ``fc1 -> act -> drop -> fc2 -> drop`` (MLLA / timm keys ``fc1``, ``fc2``).
    (..., C) -> (..., C)."""

    def __init__(self, in_features: int, hidden_features: int, act: ActLike = "gelu", drop: float = 0.0):
        super().__init__()
        self.fc1 = Linear(in_features, hidden_features)
        self.act = get_activation(act)
        self.fc2 = Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (..., C) -> (..., C); ``residual`` (..., C) is added to the output (fused at inference)."""
        h = self.drop(linear(self.fc1, x, self.act))
        if residual is None:
            return self.drop(self.fc2(h))
        if self.training and self.drop.p > 0:
            return residual + self.drop(self.fc2(h))
        return linear(self.fc2, h, residual=residual)
