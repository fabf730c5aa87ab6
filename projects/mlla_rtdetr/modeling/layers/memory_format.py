"""Memory-format helpers for feature maps (B, C, H, W).

On CPU every convolution runs fastest channels-last (oneDNN's native layout), in training as in
inference; the detector feeds its images in that layout (``RTDETR.channels_last``) and the
formats below keep the maps, and their gradients, dense in it.
"""
from __future__ import annotations

import torch

__all__ = ["is_channels_last", "as_memory_format_of", "dense_grad"]


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D map is stored channels-last (and not also plain contiguous)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def as_memory_format_of(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) made dense in the memory format of ``ref`` (no copy when it already is)."""
    return x.contiguous(memory_format=torch.channels_last if is_channels_last(ref) else torch.contiguous_format)


class _DenseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def dense_grad(x: torch.Tensor) -> torch.Tensor:
    """Identity on a map (B, C, H, W); when the map is channels-last, its gradient is made dense
    channels-last too.

    A map that is concatenated (channels of a fusion block, tokens of the decoder memory) gets a
    strided slice of the concatenation's gradient; BatchNorm's CPU backward on such a slice of a
    channels-last tensor is about 5x slower than on a dense one, which costs more than the copy.
    NCHW maps are left alone, so the NCHW backward keeps the official code's float rounding.
    """
    if not (torch.is_grad_enabled() and x.requires_grad and is_channels_last(x)) or torch.jit.is_tracing() \
            or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return x
    return _DenseGrad.apply(x)
