"""ResNet-vd ("PResNet" in the official RT-DETR code) as a detectron2 ``Backbone``.

The "d" variant has a deep stem of three 3x3 convs and, on every stride-2 downsampling block,
an average-pooled shortcut (AvgPool 2x2 -> 1x1 conv) instead of a strided 1x1 conv. Module
names mirror the official ones (``conv1.conv1_1``, ``res_layers.{i}.blocks.{j}.branch2a``,
``short``...), so official checkpoints load by identity (see ``checkpoint/rtdetr_converter.py``).

A :class:`~mlla_rtdetr.modeling.backbone.staged.StagedBackbone`: chosen stages can be replaced by
other registered stage blocks (``stage_blocks``, e.g. MLLA stages) and blocks can be inserted after
chosen stages (``insert_after``, e.g. an MLLA attention layer).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from torch import nn

from ...errors import ConfigError
from ..layers import ConvNormAct, conv_norm_residual, freeze_batch_norm, get_activation
from .staged import StagedBackbone, StageInfo

__all__ = ["PResNet", "RESNET_VD_BLOCKS", "projection_shortcut"]

# Number of residual blocks per stage (res2..res5).
RESNET_VD_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_STAGE_NAMES = ("res2", "res3", "res4", "res5")
_STAGE_STRIDES = (4, 8, 16, 32)


def projection_shortcut(ch_in: int, ch_out: int, stride: int, variant: str, norm: str) -> nn.Module:
    """Projection shortcut; the "d" variant avg-pools before a stride-1 1x1 conv when stride is 2."""
    if variant == "d" and stride == 2:
        return nn.Sequential(
            OrderedDict(
                [
                    ("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True)),
                    ("conv", ConvNormAct(ch_in, ch_out, 1, 1, norm=norm)),
                ]
            )
        )
    return ConvNormAct(ch_in, ch_out, 1, stride, norm=norm)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus shortcut (ResNet-18/34). (B, ch_in, H, W) -> (B, ch_out, H/s, W/s)."""

    expansion = 1

    def __init__(self, ch_in, ch_out, stride, shortcut, act="relu", variant="d", norm="BN"):
        super().__init__()
        self.shortcut = shortcut
        if not shortcut:
            self.short = projection_shortcut(ch_in, ch_out, stride, variant, norm)
        self.branch2a = ConvNormAct(ch_in, ch_out, 3, stride, act=act, norm=norm)
        self.branch2b = ConvNormAct(ch_out, ch_out, 3, 1, act=None, norm=norm)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # branch before shortcut: autograd sums the gradients of x's consumers in the reverse order
        # of their creation, so this order keeps training bit-identical to the official blocks
        out = self.branch2a(x)
        short = x if self.shortcut else self.short(x)
        return conv_norm_residual(self.branch2b, out, short, self.act)


class BottleNeck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) plus shortcut (ResNet-50/101); the stride sits on the 3x3
    conv for variants b/c/d and on the first 1x1 for variant a."""

    expansion = 4

    def __init__(self, ch_in, ch_out, stride, shortcut, act="relu", variant="d", norm="BN"):
        super().__init__()
        stride1, stride2 = (stride, 1) if variant == "a" else (1, stride)
        width = ch_out
        self.branch2a = ConvNormAct(ch_in, width, 1, stride1, act=act, norm=norm)
        self.branch2b = ConvNormAct(width, width, 3, stride2, act=act, norm=norm)
        self.branch2c = ConvNormAct(width, ch_out * self.expansion, 1, 1, norm=norm)
        self.shortcut = shortcut
        if not shortcut:
            self.short = projection_shortcut(ch_in, ch_out * self.expansion, stride, variant, norm)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch2b(self.branch2a(x))  # branch before shortcut: see BasicBlock.forward
        short = x if self.shortcut else self.short(x)
        return conv_norm_residual(self.branch2c, out, short, self.act)


class Blocks(nn.Module):
    """One ResNet stage (official name ``Blocks``; keys ``blocks.{j}``)."""

    def __init__(self, block, ch_in, ch_out, count, stage_num, act="relu", variant="d", norm="BN"):
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(count):
            self.blocks.append(
                block(
                    ch_in,
                    ch_out,
                    stride=2 if i == 0 and stage_num != 2 else 1,
                    shortcut=i != 0,
                    act=act,
                    variant=variant,
                    norm=norm,
                )
            )
            if i == 0:
                ch_in = ch_out * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PResNet(StagedBackbone):
    """ResNet-vd backbone returning the requested stages as a dict.

    Args:
        depth: 18, 34, 50 or 101.
        variant: "d" (official RT-DETR default), "c" (deep stem, strided shortcut), "a"/"b".
        out_features: subset of ("res2", "res3", "res4", "res5"); RT-DETR uses res3-res5
            (strides 8/16/32), the official ``return_idx=[1, 2, 3]``.
        freeze_at: official semantics: -1 trains everything; k >= 0 freezes the stem and the
            first k stages (their parameters get ``requires_grad=False``).
        freeze_norm: replace every BatchNorm2d by ``torchvision.ops.FrozenBatchNorm2d``
            (eps 1e-5; statistics and affine values become buffers).
        act: activation of the stem and residual blocks.
        base_width: width of stage res2's bottleneck (64 in every official model); the stem and
            the other stages scale with it. Smaller values give tiny models for CPU tests.
        stage_blocks: {stage name: stage block} - replace these stages by a registered block
            (``STAGE_BLOCKS``, e.g. ``{"res4": "mlla", "res5": "mlla"}``); see ``staged.py``.
            Replaced stages must not be frozen by ``freeze_at``.
        insert_after: {stage name: stage block} - insert a registered block after these stages
            (e.g. ``{"res5": "mlla_attention"}``). New blocks are never frozen.

    Input: (B, 3, H, W); output: {name: (B, C_name, ceil(H/stride), ceil(W/stride))}.
    """

    def __init__(
        self,
        depth: int = 50,
        variant: str = "d",
        out_features: Sequence[str] = ("res3", "res4", "res5"),
        freeze_at: int = -1,
        freeze_norm: bool = False,
        act: str = "relu",
        base_width: int = 64,
        stage_blocks: Optional[Mapping] = None,
        insert_after: Optional[Mapping] = None,
    ):
        super().__init__()
        if depth not in RESNET_VD_BLOCKS:
            raise ValueError(f"PResNet depth must be one of {sorted(RESNET_VD_BLOCKS)}, got {depth}.")
        unknown = [f for f in out_features if f not in _STAGE_NAMES]
        if unknown or not out_features:
            raise ValueError(f"out_features must be a non-empty subset of {_STAGE_NAMES}, got {out_features}.")
        if variant not in ("a", "b", "c", "d"):
            raise ValueError(f"Unknown ResNet variant '{variant}' (expected a, b, c or d).")
        self.depth = depth
        self.variant = variant

        ch_in = base_width
        if variant in ("c", "d"):
            stem = [
                (3, ch_in // 2, 3, 2, "conv1_1"),
                (ch_in // 2, ch_in // 2, 3, 1, "conv1_2"),
                (ch_in // 2, ch_in, 3, 1, "conv1_3"),
            ]
        else:
            stem = [(3, ch_in, 7, 2, "conv1_1")]
        self.conv1 = nn.Sequential(
            OrderedDict((name, ConvNormAct(ci, co, k, s, act=act)) for ci, co, k, s, name in stem)
        )

        block = BottleNeck if depth >= 50 else BasicBlock
        widths = [base_width * 2**i for i in range(4)]
        out_channels = [w * block.expansion for w in widths]
        num_stages = _STAGE_NAMES.index(max(out_features, key=_STAGE_NAMES.index)) + 1
        self.res_layers = nn.ModuleList()
        infos = []
        for i in range(num_stages):
            self.res_layers.append(
                Blocks(block, ch_in, widths[i], RESNET_VD_BLOCKS[depth][i], i + 2, act=act, variant=variant)
            )
            infos.append(StageInfo(ch_in, out_channels[i], 1 if i == 0 else 2, RESNET_VD_BLOCKS[depth][i]))
            ch_in = out_channels[i]

        self._out_features = [f for f in _STAGE_NAMES if f in out_features]
        self._out_feature_channels = {f: out_channels[_STAGE_NAMES.index(f)] for f in self._out_features}
        self._out_feature_strides = {f: _STAGE_STRIDES[_STAGE_NAMES.index(f)] for f in self._out_features}

        self.freeze_at = freeze_at
        if freeze_at >= 0:
            self._freeze(self.conv1)
            for stage in self.res_layers[: min(freeze_at, num_stages)]:
                self._freeze(stage)
        self.freeze_norm = freeze_norm
        if freeze_norm:
            freeze_batch_norm(self)
        frozen = [_STAGE_NAMES[i] for i in range(min(freeze_at, num_stages))]
        if set(frozen) & set(stage_blocks or {}):
            raise ConfigError(
                f"stage_blocks replaces {sorted(set(frozen) & set(stage_blocks))}, which freeze_at={freeze_at} "
                f"freezes; a new stage must train (lower freeze_at)."
            )
        # After freezing: replaced / inserted blocks are new and keep trainable norms.
        self.set_stages([f"res_layers.{i}" for i in range(num_stages)], _STAGE_NAMES[:num_stages], infos,
                        stage_blocks, insert_after)

    @staticmethod
    def _freeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(False)

    @property
    def size_divisibility(self) -> int:
        # The hybrid encoder upsamples stride-32 maps x2 and concatenates them with stride-16
        # maps, so inputs must be multiples of the largest stride.
        return 32

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, base_width, ceil(H/4), ceil(W/4)): deep stem + 3x3/2 max pool."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"PResNet expects (B, 3, H, W) images, got shape {tuple(x.shape)}.")
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
