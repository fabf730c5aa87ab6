"""2D normalization layers by name, and BatchNorm freezing."""
from __future__ import annotations

from typing import Optional

from timm.layers import freeze_batch_norm_2d
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
    """Recursively replace every BatchNorm by a frozen copy that keeps its statistics, affine
    values and eps: ``nn.BatchNorm2d`` / ``SyncBatchNorm`` -> torchvision ``FrozenBatchNorm2d``,
    timm's ``BatchNormAct2d`` -> ``FrozenBatchNormAct2d`` (its activation and dropout kept).
    Returns the (possibly new) module; ``module`` itself is replaced when it is a BatchNorm."""
    return freeze_batch_norm_2d(module)
