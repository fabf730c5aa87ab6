"""2D normalization layers by name, and BatchNorm freezing."""
from __future__ import annotations

from typing import Optional

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["get_norm", "freeze_batch_norm"]


def get_norm(norm: Optional[str], channels: int) -> nn.Module:
    """``"BN"`` (BatchNorm2d), ``"FrozenBN"`` (torchvision FrozenBatchNorm2d) or ``None``
    (identity, no parameters). eps is 1e-5, as in the official RT-DETR and MLLA models."""
    if norm is None:
        return nn.Identity()
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=1e-5)
    raise ValueError(f"Unknown norm '{norm}'; expected 'BN', 'FrozenBN' or None.")


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
