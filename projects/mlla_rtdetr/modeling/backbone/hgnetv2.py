"""PP-HGNetV2 L / X / H, the backbones of RT-DETR-L / X and RT-DETRv2-L / X / H, and B0-B6, the
backbones of D-FINE / DEIM-D-FINE (N, S: B0; M: B2; L: B4; X: B5).

The official ``HGNetv2`` (lyuwenyu/RT-DETR ``rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py``, a port
of PaddleDetection's ``PPHGNetV2``) is the same network as timm's ``hgnetv2_b4`` / ``b5`` / ``b6``:
stem 3-32-48 / 3-32-64 / 3-48-96, four stages of HG blocks (6 layers each, light 5x5 depthwise
blocks in the last two stages), SE-style aggregation (1x1 squeeze to C/2, 1x1 excitation to C),
``use_lab=False``. With the official settings (FrozenBatchNorm2d, ``freeze_at=0``) the timm model
gives bit-identical maps to the official one (``tests/test_hgnetv2.py`` and the
``rtdetrv2_hgnetv2_l`` parity fixture), so the family is built from timm, not re-implemented.

Why timm's ``hgnetv2_b4`` reports 13,553,376 backbone parameters and the official L 13,507,680:
timm builds trainable ``BatchNorm2d`` layers, whose 45,696 affine values (2 x the 22,848 BN
channels) are parameters; the official backbone freezes every BatchNorm (``freeze_norm: True``),
which turns them into buffers, leaving the conv weights only. The same holds for X
(33,325,760 - 93,920 = 33,231,840) and H (69,013,472 - 166,416 = 68,847,056). Stem, ``use_lab``
and the (dropped) classification head play no part. Only the random initialisation differs
(timm: Kaiming-normal fan-out; official: fan-in), which matters only without ImageNet weights.

D-FINE's ``HGNetv2(name="B0" ... "B6")`` (ShihuaHuang95/DEIM ``engine/backbone/hgnetv2.py``) is the
same network again (its L / X are B4 / B5), with learnable affine blocks after every activation
(``use_lab``) in the small sizes: timm builds ``hgnetv2_b0`` ... ``b3`` with them and ``b4`` ...
``b6`` without, exactly the official D-FINE settings, so ``use_lab`` defaults to the size's value
(``None``) and B0-B3 cannot be built without it. The official D-FINE stem pads its 2x2 convs with
``F.pad`` instead of a ``ZeroPad2d`` module, hence ``stem.stem2a.conv.weight`` without the ``.1``.

Key names differ from the official ones only in spelling (``stages.1`` -> ``body.stages_1``,
``aggregation_squeeze_conv`` / ``aggregation_excitation_conv`` -> ``aggregation.0`` / ``.1``,
``stem2a.conv.1`` (after a ZeroPad2d) -> ``stem2a.conv``); ``checkpoint/rtdetr_converter.py`` maps
the official detector checkpoints and the ImageNet ``PPHGNetV2_*_ssld_pretrained_from_paddle.pth``
files.

MLLA placements: ``HGNetv2`` is a :class:`~mlla_rtdetr.modeling.backbone.staged.StagedBackbone`,
so ``stage_blocks={"res5": "mlla"}`` makes a hybrid HGNetv2 and ``insert_after={"res4":
"mlla_attention"}`` inserts the attention-only MLLA layer, exactly as on ResNet-vd. Replaced stages
start from their own initialisation (the ImageNet file has no weights of that shape for them).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ...errors import ConfigError
from .staged import StagedBackbone, StageInfo
from .timm_backbone import TimmBackbone, _level_name

__all__ = ["HGNETV2_VARIANTS", "HGNetv2"]

#: Official size name -> timm model of the same architecture (RT-DETR: L / X / H; D-FINE: B0-B6).
HGNETV2_VARIANTS: Dict[str, str] = {
    "L": "hgnetv2_b4",
    "X": "hgnetv2_b5",
    "H": "hgnetv2_b6",
    **{f"B{i}": f"hgnetv2_b{i}" for i in range(7)},
}
#: Sizes timm always builds with learnable affine blocks (``use_lab=True``).
_LAB_SIZES = ("B0", "B1", "B2", "B3")


#: The HGNetv2 stem (StemV2) reduces the image 4x in every size.
_STEM_STRIDE = 4


class HGNetv2(TimmBackbone, StagedBackbone):
    """HGNetv2 with the official constructor arguments (``name``, ``use_lab``, ``return_idx`` as
    ``out_indices``, ``freeze_at``, ``freeze_norm``, ``pretrained``).

    Args:
        name: "L", "X" or "H" (RT-DETR), or "B0" ... "B6" (D-FINE; B4 = L, B5 = X, B6 = H).
        out_indices: stages returned (official ``return_idx`` [1, 2, 3]: strides 8 / 16 / 32,
            outputs ``res3`` / ``res4`` / ``res5`` with 512 / 1024 / 2048 channels for every size).
        freeze_at: -1 trains everything; k >= 0 freezes the stem and the first k stages.
        freeze_norm: FrozenBatchNorm2d everywhere (the official recipes set it).
        use_lab: learnable affine (scale, bias) after every activation. ``None``: the size's own
            setting (on for B0-B3, the official D-FINE N / S / M; off for B4-B6 and L / X / H, every
            official RT-DETR model and D-FINE L / X); B0-B3 exist only with it.
        pretrained: ``False`` or the path of a timm-format ``hgnetv2_b*`` checkpoint. The official
            ImageNet files (``PPHGNetV2_{L,X,H}_ssld_pretrained_from_paddle.pth``) go through
            ``train.init_checkpoint`` instead: they are detected and converted.
        stage_blocks / insert_after: MLLA placements by stage name (``res2`` ... ``res5``), see
            :mod:`~mlla_rtdetr.modeling.backbone.staged`.

    Input (B, 3, H, W) -> {"res3": (B, 512, H/8, W/8), "res4": (B, 1024, H/16, W/16),
    "res5": (B, 2048, H/32, W/32)}.
    """

    def __init__(
        self,
        name: str = "L",
        out_indices: Sequence[int] = (1, 2, 3),
        freeze_at: int = -1,
        freeze_norm: bool = False,
        use_lab: Optional[bool] = None,
        pretrained: Union[bool, str] = False,
        stage_blocks: Optional[Mapping] = None,
        insert_after: Optional[Mapping] = None,
    ):
        if name not in HGNETV2_VARIANTS:
            raise ConfigError(f"HGNetv2 name must be one of {sorted(HGNETV2_VARIANTS)}, got '{name}'.")
        if name in _LAB_SIZES:
            if use_lab is False:
                raise ConfigError(f"HGNetv2 {name} exists only with learnable affine blocks: set use_lab=True (or None).")
            use_lab, lab_kwargs = True, {}  # timm's hgnetv2_b0..b3 set it themselves
        else:
            use_lab = bool(use_lab)
            lab_kwargs = {"use_lab": use_lab}
        super().__init__(
            HGNETV2_VARIANTS[name],
            out_indices=out_indices,
            pretrained=pretrained,
            freeze_at=freeze_at,
            freeze_norm=freeze_norm,
            **lab_kwargs,
        )
        self.name = name
        self.use_lab = use_lab
        self._set_timm_stages(stage_blocks, insert_after)

    def _set_timm_stages(self, stage_blocks: Optional[Mapping], insert_after: Optional[Mapping]) -> None:
        """Describe the built stages (``body.stages_<i>``, named by their stride) to StagedBackbone."""
        levels = self.body.feature_info.info
        paths, names, infos = [], [], []
        in_channels, in_stride = None, _STEM_STRIDE
        for level in levels:
            path = "body." + level["module"].replace(".", "_", 1)
            try:
                stage = self.get_submodule(path)
            except AttributeError:
                break  # pruned: after the last returned level
            if in_channels is None:
                in_channels = next(m for m in stage.modules() if isinstance(m, nn.Conv2d)).in_channels
            paths.append(path)
            names.append(_level_name(level["reduction"]))
            infos.append(StageInfo(in_channels, int(level["num_chs"]), int(level["reduction"]) // in_stride,
                                   len(stage.blocks)))
            in_channels, in_stride = int(level["num_chs"]), int(level["reduction"])
        self.set_stages(paths, names, infos, stage_blocks, insert_after)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.stem(x)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (B, 3, H, W) -> {"res3": (B, 512, H/8, W/8), ...} for the out_features."""
        return StagedBackbone.forward(self, x)
