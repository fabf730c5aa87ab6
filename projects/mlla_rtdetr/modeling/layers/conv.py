"""Conv -> norm -> activation, the convolution unit of every convolutional part of the models."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .activation import ActLike, get_activation
from .norm import get_norm

__all__ = ["ConvNormAct"]


class ConvNormAct(nn.Module):
    """Conv2d -> norm -> activation; keys ``conv.*`` and ``norm.*`` as in the official RT-DETR
    (``ConvNormLayer``) and MLLA (``ConvLayer``) implementations, so their checkpoints map by name.

    Input (B, C_in, H, W) -> (B, C_out, H', W'). ``padding`` defaults to ``(k - 1) // 2``;
    ``norm=None`` gives a bare (usually biased) conv, ``act=None`` no activation.
    """

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int = 1,
                 padding: Optional[int] = None, groups: int = 1, bias: bool = False,
                 norm: Optional[str] = "BN", act: ActLike = None):
        super().__init__()
        self.conv = nn.Conv2d(
            ch_in, ch_out, kernel_size, stride,
            padding=(kernel_size - 1) // 2 if padding is None else padding,
            groups=groups, bias=bool(bias),
        )
        self.norm = get_norm(norm, ch_out)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))
