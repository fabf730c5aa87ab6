"""Small layers shared by the RT-DETR backbone, encoder and (optionally) decoder.

Submodule names (``conv`` / ``norm``) follow the official RT-DETR implementation so that
official checkpoints map onto this code base mostly by identity.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["get_activation", "get_norm", "ConvNormLayer", "MLP", "freeze_batch_norm"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,  # exact (erf) GELU, as in the official encoder FFN
    "leaky_relu": nn.LeakyReLU,
    "hardsigmoid": nn.Hardsigmoid,
}


def get_activation(act: Union[str, nn.Module, None]) -> nn.Module:
    """Activation module from a name (``relu``, ``silu``, ``gelu``, ...), a module, or ``None``
    (identity)."""
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    key = str(act).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation '{act}'; choose one of {sorted(_ACTIVATIONS)} or None.")
    return _ACTIVATIONS[key]()


def get_norm(norm: str, channels: int) -> nn.Module:
    """2D normalization layer: ``"BN"`` (BatchNorm2d) or ``"FrozenBN"``; eps is 1e-5 for both,
    matching the official model."""
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=1e-5)
    raise ValueError(f"Unknown norm '{norm}'; expected 'BN' or 'FrozenBN'.")


class ConvNormLayer(nn.Module):
    """Conv2d -> norm -> activation (official ``ConvNormLayer``; keys ``conv.*`` and ``norm.*``).

    Input (B, C_in, H, W) -> output (B, C_out, H', W'). Padding defaults to ``(k - 1) // 2``.
    """

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel_size: int,
        stride: int = 1,
        padding: Optional[int] = None,
        bias: bool = False,
        act: Union[str, nn.Module, None] = None,
        norm: str = "BN",
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            ch_in,
            ch_out,
            kernel_size,
            stride,
            padding=(kernel_size - 1) // 2 if padding is None else padding,
            bias=bool(bias),
        )
        self.norm = get_norm(norm, ch_out)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class MLP(nn.Module):
    """Stack of Linear layers with an activation between them (official ``MLP``; keys
    ``layers.{i}.*``). Input (..., input_dim) -> output (..., output_dim)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, act="relu"):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = self.act(x)
        return x


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Recursively replace every ``nn.BatchNorm2d`` by a ``FrozenBatchNorm2d`` that keeps its
    statistics and affine values. Returns the (possibly new) module."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new_child = freeze_batch_norm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
