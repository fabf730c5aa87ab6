"""2D normalization layers by name, BatchNorm freezing, and BatchNorm synchronised over processes."""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from fvcore.nn.distributed import differentiable_all_reduce  # detectron2's NaiveSyncBatchNorm uses it too
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["get_norm", "freeze_batch_norm", "SyncBatchNorm2d", "convert_sync_batch_norm"]


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


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of every image of the default process
    group, on any device and backend (gloo on CPU included): the semantics of torch's
    ``nn.SyncBatchNorm``, which runs on GPUs only. The batch mean and biased variance of all
    processes normalise, ``running_var`` takes their unbiased variance, and gradients flow through
    the statistics to every process. Outside training, or without a group of several processes,
    it is ``BatchNorm2d``. (detectron2's ``NaiveSyncBatchNorm`` would update ``running_var`` with
    the biased variance and not count ``num_batches_tracked``.)

    Two small all-reduces per forward (sum and count, then squared deviations: the two-pass
    variance, as accurate as one process's) and two in backward.

    x: (B, C, H, W) -> (B, C, H, W).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        xf = x.float()  # statistics in float32 under autocast as well
        dims = (0, 2, 3)
        local = torch.cat([xf.sum(dims), xf.new_full((1,), float(xf.numel() // xf.shape[1]))])
        total = differentiable_all_reduce(local)
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = xf - mean.reshape(1, -1, 1, 1)
        var = differentiable_all_reduce(centred.square().sum(dims)) / count  # biased, normalises
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * (count / (count - 1).clamp(min=1)), factor)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        y = centred * scale.reshape(1, -1, 1, 1)
        if self.affine:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y.to(x.dtype)


def convert_sync_batch_norm(module: nn.Module, device_type: str) -> nn.Module:
    """Every ``nn.BatchNorm2d`` of ``module`` made a BatchNorm synchronised over the default
    process group (the official RT-DETR's ``sync_bn``): torch's ``nn.SyncBatchNorm`` on CUDA,
    :class:`SyncBatchNorm2d` on other devices. Parameters (the same objects: an optimizer built
    before keeps working), buffers and train/eval mode carry over; FrozenBatchNorm2d stays frozen.
    Returns the (possibly new) module; ``module`` itself is replaced when it is a BatchNorm."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm2d):
        sync = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        if module.track_running_stats:
            sync.running_mean, sync.running_var = module.running_mean, module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        converted = convert_sync_batch_norm(child, device_type)
        if converted is not child:
            setattr(module, name, converted)
    return module
