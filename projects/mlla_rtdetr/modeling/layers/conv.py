"""Conv -> norm -> activation, the convolution unit of every convolutional part of the models, and
the inference-time folding of BatchNorms into the convolutions before them."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

from .activation import ActLike, get_activation
from .fused import conv2d
from .norm import get_norm

__all__ = ["ConvNormAct", "conv_norm_residual", "fold_conv_norms"]


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
        if isinstance(self.norm, nn.Identity):  # no norm, or folded by fold_conv_norms: fuse the act
            return conv2d(self.conv, x, self.act)
        return self.act(self.norm(self.conv(x)))


def conv_norm_residual(layer: ConvNormAct, x: torch.Tensor, residual: torch.Tensor,
                       act: Optional[nn.Module] = None) -> torch.Tensor:
    """``act(layer(x) + residual)`` for a :class:`ConvNormAct` without an activation of its own (the
    last conv of a residual branch); one fused kernel at inference once its norm is folded."""
    if isinstance(layer.norm, nn.Identity):
        return conv2d(layer.conv, x, act, residual=residual)
    y = layer(x) + residual
    return y if act is None else act(y)


_FOLDABLE_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


@torch.no_grad()
def fold_conv_norms(module: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution into that convolution (inference).

    A pair is a module with a ``conv`` (``nn.Conv2d``) and a ``norm`` child (``nn.BatchNorm2d`` using
    running statistics, or ``FrozenBatchNorm2d``): :class:`ConvNormAct` and the ``conv``/``norm``
    projections of the encoder and decoder. The conv gets the equivalent weight and bias and the
    norm becomes an identity, so the outputs are unchanged up to float rounding while one pass
    over every feature map disappears. The ``norm.*`` keys leave the state dict (as RepVGG
    folding does); only for eval / export. Returns the number of folded norms.
    """
    folded = 0
    for m in module.modules():
        conv, norm = getattr(m, "conv", None), getattr(m, "norm", None)
        if not isinstance(conv, nn.Conv2d) or not isinstance(norm, _FOLDABLE_NORMS):
            continue
        if isinstance(norm, nn.BatchNorm2d) and (norm.training or not norm.track_running_stats):
            raise RuntimeError("fold_conv_norms needs BatchNorms in eval mode with running statistics.")
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean,
                                                      norm.running_var, norm.eps, norm.weight, norm.bias)
        m.norm = nn.Identity()
        folded += 1
    return folded
