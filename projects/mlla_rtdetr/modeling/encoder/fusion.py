"""Cross-scale fusion blocks of the hybrid encoder (CCFF) and their registry.

Every FPN / PAN block of :class:`~mlla_rtdetr.modeling.encoder.HybridEncoder` is built by a
builder registered in :data:`FUSION_BLOCKS` and called as::

    builder(in_channels, out_channels, num_blocks, expansion, act, **fusion_cfg)

returning a module (B, in_channels, H, W) -> (B, out_channels, H, W); ``in_channels`` is twice the
hidden width (the concatenated maps), ``num_blocks = round(3 * depth_mult)``. Built in:

* ``"csprep"`` (default): the official CSPRep layer of RepVGG blocks (:class:`CSPRepLayer`);
* ``"mlla"`` (``mlla_fusion.py``): the same CSP layer with MLLA blocks as bottlenecks;
* ``"rep_ncsp_elan4"``: D-FINE's CSP-ELAN block (:class:`RepNCSPELAN4`, from YOLOv9);
* ``"mlla_elan"`` (``mlla_fusion.py``): D-FINE's CSP-ELAN block with MLLA blocks as the
  bottlenecks of its two CSP layers.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct, Registry, conv2d, get_activation

__all__ = ["FUSION_BLOCKS", "RepVggBlock", "CSPRepLayer", "RepNCSPELAN4", "build_csprep", "build_rep_ncsp_elan4"]

#: name -> builder of a fusion block (see the module docstring for the signature).
FUSION_BLOCKS = Registry("FUSION_BLOCKS")


class RepVggBlock(nn.Module):
    """RepVGG block: act(BN(conv3x3(x)) + BN(conv1x1(x))), (B, C_in, H, W) -> (B, C_out, H, W).

    :meth:`deploy` folds both branches and their BatchNorms into one biased 3x3 conv (``conv``),
    which gives the same outputs in eval mode with a single convolution.
    """

    def __init__(self, ch_in: int, ch_out: int, act="relu"):
        super().__init__()
        self.ch_in = ch_in
        self.ch_out = ch_out
        self.conv1 = ConvNormAct(ch_in, ch_out, 3, 1, padding=1, act=None)
        self.conv2 = ConvNormAct(ch_in, ch_out, 1, 1, padding=0, act=None)
        self.act = get_activation(act)

    @property
    def deployed(self) -> bool:
        return hasattr(self, "conv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            return conv2d(self.conv, x, self.act)
        return self.act(self.conv1(x) + self.conv2(x))

    @staticmethod
    def _fuse(branch: ConvNormAct):
        """(kernel, bias) of conv followed by BatchNorm (running statistics)."""
        norm = branch.norm
        std = (norm.running_var + norm.eps).sqrt()
        scale = norm.weight / std
        kernel = branch.conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = norm.bias - norm.running_mean * scale
        if branch.conv.bias is not None:
            bias = bias + branch.conv.bias * scale
        return kernel, bias

    def equivalent_kernel_bias(self):
        k3, b3 = self._fuse(self.conv1)
        k1, b1 = self._fuse(self.conv2)
        return k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1

    @torch.no_grad()
    def deploy(self) -> None:
        """Replace the two branches by one fused 3x3 conv (idempotent)."""
        if self.deployed:
            return
        kernel, bias = self.equivalent_kernel_bias()
        conv = nn.Conv2d(self.ch_in, self.ch_out, 3, 1, padding=1, bias=True).to(kernel.device, kernel.dtype)
        conv.train(self.training)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.conv = conv
        del self.conv1
        del self.conv2


class CSPRepLayer(nn.Module):
    """CSP layer: conv3(bottlenecks(conv1(x)) + conv2(x)), (B, C_in, H, W) -> (B, C_out, H, W).

    ``conv1`` / ``conv2`` are 1x1 ConvNormAct to the hidden width ``int(C_out * expansion)``;
    ``conv3`` (1x1 to C_out) is an identity when the hidden width equals ``C_out``. The
    bottlenecks are ``num_blocks`` RepVGG blocks (the official CCFF block), or whatever
    ``bottlenecks(hidden, num_blocks)`` builds: a (B, hidden, H, W) -> (B, hidden, H, W) module
    (e.g. MLLA blocks, see ``mlla_fusion.py``).
    """

    def __init__(self, in_channels, out_channels, num_blocks=3, expansion=1.0, bias=False, act="silu",
                 bottlenecks: Optional[Callable[[int, int], nn.Module]] = None):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormAct(in_channels, hidden, 1, 1, bias=bias, act=act)
        self.conv2 = ConvNormAct(in_channels, hidden, 1, 1, bias=bias, act=act)
        if bottlenecks is None:
            self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        else:
            self.bottlenecks = bottlenecks(hidden, num_blocks)
        if hidden != out_channels:
            self.conv3 = ConvNormAct(hidden, out_channels, 1, 1, bias=bias, act=act)
        else:
            self.conv3 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


@FUSION_BLOCKS.register("csprep")
def build_csprep(in_channels: int, out_channels: int, num_blocks: int, expansion: float, act="silu") -> CSPRepLayer:
    """The official CCFF fusion block: a CSP layer of ``num_blocks`` RepVGG blocks."""
    return CSPRepLayer(in_channels, out_channels, num_blocks, expansion=expansion, act=act)


class RepNCSPELAN4(nn.Module):
    """D-FINE's fusion block (CSP-ELAN of YOLOv9), (B, C_in, H, W) -> (B, C_out, H, W).

    ``cv1`` (1x1 to ``c3``) is split in two halves; ``cv2`` (a CSPRep layer of ``num_blocks``
    RepVGG blocks to ``c4`` channels, then a 3x3 conv) continues from the second half and ``cv3``
    (the same, ``c4`` -> ``c4``) from ``cv2``'s output; ``cv4`` (1x1) fuses the four maps
    ``[half1, half2, cv2, cv3]`` (``c3 + 2 * c4`` channels). Every conv has BN and ``act``.
    ``bottlenecks`` builds the bottleneck stack of both CSP layers (default: RepVGG blocks; see
    :class:`CSPRepLayer`).
    """

    def __init__(self, in_channels: int, out_channels: int, c3: int, c4: int, num_blocks: int = 3,
                 bias: bool = False, act="silu", bottlenecks: Optional[Callable[[int, int], nn.Module]] = None):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = ConvNormAct(in_channels, c3, 1, 1, bias=bias, act=act)
        self.cv2 = nn.Sequential(CSPRepLayer(c3 // 2, c4, num_blocks, 1.0, bias=bias, act=act, bottlenecks=bottlenecks),
                                 ConvNormAct(c4, c4, 3, 1, bias=bias, act=act))
        self.cv3 = nn.Sequential(CSPRepLayer(c4, c4, num_blocks, 1.0, bias=bias, act=act, bottlenecks=bottlenecks),
                                 ConvNormAct(c4, c4, 3, 1, bias=bias, act=act))
        self.cv4 = ConvNormAct(c3 + 2 * c4, out_channels, 1, 1, bias=bias, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.append(self.cv2(y[-1]))
        y.append(self.cv3(y[-1]))
        return self.cv4(torch.cat(y, 1))


@FUSION_BLOCKS.register("rep_ncsp_elan4")
def build_rep_ncsp_elan4(in_channels: int, out_channels: int, num_blocks: int, expansion: float,
                         act="silu", bottlenecks: Optional[Callable[[int, int], nn.Module]] = None) -> RepNCSPELAN4:
    """D-FINE's CCFF fusion block: ``c3 = in_channels`` (twice the hidden width) and
    ``c4 = round(expansion * out_channels // 2)``, as the official HybridEncoder."""
    return RepNCSPELAN4(in_channels, out_channels, in_channels, round(expansion * out_channels // 2), num_blocks,
                        act=act, bottlenecks=bottlenecks)
