"""Conv -> norm -> activation, the convolution unit of every convolutional part of the models, and
the inference-time folding of BatchNorms into the convolutions before them, and the row-band
evaluation of stride-2 downsampling chains whose hidden map is wide."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

from .activation import ActLike, get_activation
from .fused import conv2d, onednn_enabled
from .norm import get_norm

__all__ = ["ConvNormAct", "conv_norm_residual", "fold_conv_norms", "downsample_in_row_bands"]


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


_FOLDABLE_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)  # SyncBatchNorm: converted for DDP


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
        if isinstance(norm, (nn.BatchNorm2d, nn.SyncBatchNorm)) and (norm.training or not norm.track_running_stats):
            raise RuntimeError("fold_conv_norms needs BatchNorms in eval mode with running statistics.")
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean,
                                                      norm.running_var, norm.eps, norm.weight, norm.bias)
        m.norm = nn.Identity()
        folded += 1
    return folded


#: Largest intermediate map (bytes) that :func:`downsample_in_row_bands` lets exist at once. Above
#: ~32 MB glibc gives every allocation fresh zero-filled pages, and a map of that size no longer
#: stays in the caches between the two convolutions (measured on CPU, MLLA-T at 640: the 52 MB
#: hidden map of the first PatchMerging cost 20 ms whole and 7.5 ms in bands).
ROW_BAND_BYTES = 16 * 2**20


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


def downsample_in_row_bands(x: torch.Tensor, down: ConvNormAct, pre: Optional[nn.Module] = None,
                            post: Optional[nn.Module] = None, band_bytes: Optional[int] = None) -> torch.Tensor:
    """``post(down(pre(x)))`` for a 3x3 / stride-2 / padding-1 ``down`` between row-local layers
    (``pre`` / ``post``: 1x1 convs or None), computed band of output rows by band at CPU inference.

    Every output row sees exactly the input rows it sees in the whole-map computation, so the
    result is the same (bit-identical for MLLA's maps at 640; a band of very few rows may get a
    kernel that rounds differently, ~1e-7). Only the widest intermediate map (``down``'s input or
    output) is never materialised whole: each band of it stays below ``band_bytes`` (default
    :data:`ROW_BAND_BYTES`) and in cache. Elsewhere (training, GPU, tracing / export) it is the
    plain composition.

    x: (B, C_in, H, W) with H even -> (B, C_out, H / 2, ceil(W / 2)).
    """
    conv = down.conv
    if (conv.kernel_size[0], conv.stride[0], conv.padding[0]) != (3, 2, 1):
        raise ValueError(f"downsample_in_row_bands needs a 3x3 / stride 2 / padding 1 conv, got {conv}.")
    pre = pre if pre is not None else _unchanged
    post = post if post is not None else _unchanged
    height, width = x.shape[-2:]
    out_rows = height // 2
    # elements per output row and image of the widest map: down's input (2 rows) or its output
    widest = max(2 * width * conv.in_channels, (width + 1) // 2 * conv.out_channels)
    band_bytes = ROW_BAND_BYTES if band_bytes is None else band_bytes
    rows_per_band = max(1, band_bytes // (x.shape[0] * widest * x.element_size()))
    if height % 2 or rows_per_band >= out_rows or down.training or not onednn_enabled(conv, x):
        return post(down(pre(x)))
    num_bands = -(-out_rows // rows_per_band)
    rows_per_band = -(-out_rows // num_bands)  # bands of equal height
    bands = []
    for first in range(0, out_rows, rows_per_band):
        last = min(out_rows, first + rows_per_band)
        # Output row r reads input rows 2r-1 .. 2r+1. Starting the band at the even row 2*first-2
        # keeps the conv's own padding in an extra first output row, which is dropped.
        start = max(0, 2 * first - 2)
        y = down(pre(x[:, :, start:2 * last]))
        bands.append(post(y[:, :, 1:] if first else y))
    return torch.cat(bands, dim=2)
