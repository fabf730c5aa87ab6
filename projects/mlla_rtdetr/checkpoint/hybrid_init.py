"""ImageNet initialisation of a hybrid ResNet-vd / MLLA backbone from the two official ImageNet files.

A :class:`~mlla_rtdetr.modeling.backbone.PResNet` whose stages res4 / res5 are MLLA stages
(``stage_blocks``) has an ImageNet-pretrained source for every part:

* stem and convolutional stages: the official ResNet-vd weights (``ResNet18_vd_pretrained_from_paddle.pth``
  ...), by identity of key names;
* each MLLA stage's blocks: the blocks of the official MLLA stage with the same width and number
  of heads (MLLA-T's stages are 64 / 128 / 256 / 512 channels wide with 2 / 4 / 8 / 16 heads,
  ResNet-18/34-vd's res2..res5 64 / 128 / 256 / 512), the first ``depth`` of them;
* the MLLA stage's downsampling: with ``downsample="resnet"`` it is the projection shortcut of
  ResNet-vd's first block of that stage (``res_layers.{i}.blocks.0.short``: the same 2x2 average
  pool + 1x1 conv + BN), with ``"patch_merging"`` MLLA's ``layers.{k-1}.downsample``.

Attention-only layers inserted after stages (``insert_after``) are new: they keep their
initialisation (the identity, see ``modeling/backbone/mlla_stages.py``). The result is one state
dict for ``train.init_checkpoint`` (keys ``backbone.*``); :class:`HybridInitReport` says where every
tensor came from and which of the backbone's tensors keep their initialisation.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..modeling.backbone.mlla_stages import MLLAMapStage
from ..modeling.backbone.mlla import PatchMerging
from ..modeling.backbone.staged import StagedBackbone
from .mlla_converter import convert_official_mlla
from .rtdetr_converter import CheckpointConversionError, convert_official_resnet_vd

__all__ = ["HybridInitReport", "hybrid_imagenet_init"]


@dataclass
class HybridInitReport:
    """Where the tensors of a hybrid backbone's initialisation come from."""

    sources: Dict[str, List[str]] = field(default_factory=dict)  # "source -> target" -> keys
    kept_init: List[str] = field(default_factory=list)  # backbone keys no file provides

    def add(self, what: str, key: str) -> None:
        self.sources.setdefault(what, []).append(key)

    def __str__(self) -> str:
        lines = [f"{len(v):5d} tensors  {k}" for k, v in self.sources.items()]
        lines.append(f"{len(self.kept_init):5d} tensors  keep their initialisation"
                     + (f" (e.g. {', '.join(self.kept_init[:3])})" if self.kept_init else ""))
        return "\n".join(lines)


def _mlla_stages(mlla_state: Mapping[str, torch.Tensor]) -> Dict[int, Tuple[int, int]]:
    """MLLA stage index -> (width, number of blocks) of a converted MLLA backbone state dict."""
    stages: Dict[int, Tuple[int, int]] = {}
    for k, v in mlla_state.items():
        parts = k.split(".")
        if parts[0] == "layers" and parts[2] == "blocks" and parts[4:] == ["norm1", "weight"]:
            i, j = int(parts[1]), int(parts[3])
            stages[i] = (v.numel(), max(stages.get(i, (0, 0))[1], j + 1))
    return stages


def hybrid_imagenet_init(backbone: StagedBackbone, resnet_vd: Optional[Mapping] = None,
                         mlla: Optional[Mapping] = None, mlla_heads: Optional[Dict[int, int]] = None,
                         prefix: str = "backbone.") -> Tuple["OrderedDict[str, torch.Tensor]", HybridInitReport]:
    """Initialisation of ``backbone`` (a PResNet with MLLA stages) from official ImageNet files.

    Args:
        backbone: the built backbone (its state dict decides the keys and shapes).
        resnet_vd: the official ImageNet ResNet-vd checkpoint (loaded), or None.
        mlla: the official ImageNet MLLA checkpoint (loaded), or None.
        mlla_heads: heads per MLLA stage (default: MLLA-T/S, 2 / 4 / 8 / 16); a stage is used only
            if width and heads match the hybrid stage.
        prefix: prepended to every key ("backbone." addresses the detector).
    """
    own = backbone.state_dict()
    report = HybridInitReport()
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def put(key: str, value: torch.Tensor, what: str) -> None:
        if key not in own:
            raise CheckpointConversionError(f"{what}: the backbone has no tensor '{key}'.")
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointConversionError(
                f"{what}: '{key}' has shape {tuple(value.shape)} in the file, {tuple(own[key].shape)} in the model.")
        out[key] = value.to(own[key].dtype)
        report.add(what, key)

    replaced = {name: (path, stage) for name, path, stage in zip(backbone.stage_names, backbone.stage_paths,
                                                                 backbone.stage_modules())
                if isinstance(stage, MLLAMapStage)}
    if resnet_vd is not None:
        state, _ = convert_official_resnet_vd(resnet_vd)
        for k, v in state.items():
            if k in own and tuple(v.shape) == tuple(own[k].shape):
                put(k, v, "ResNet-vd -> same key")
        for name, (path, stage) in replaced.items():
            if stage.downsample is None or isinstance(stage.downsample, PatchMerging):
                continue
            short = f"{path}.blocks.0.short."
            for k, v in state.items():
                if k.startswith(short):
                    put(f"{path}.downsample." + k[len(short):], v, "ResNet-vd first-block shortcut -> MLLA stage downsample")
    if mlla is not None:
        state, _ = convert_official_mlla(mlla, target="backbone")
        heads = mlla_heads or {0: 2, 1: 4, 2: 8, 3: 16}
        available = _mlla_stages(state)
        for name, (path, stage) in replaced.items():
            blocks = stage.stage.blocks
            match = [k for k, (width, depth) in sorted(available.items())
                     if width == stage.out_channels and heads.get(k) == blocks[0].attn.num_heads
                     and depth >= len(blocks)]
            if not match:
                raise CheckpointConversionError(
                    f"No MLLA stage of the checkpoint has {stage.out_channels} channels, "
                    f"{blocks[0].attn.num_heads} heads and >= {len(blocks)} blocks for '{name}' "
                    f"(checkpoint stages, index: (width, blocks): {available}).")
            k = match[0]
            for j in range(len(blocks)):
                src = f"layers.{k}.blocks.{j}."
                for key, v in state.items():
                    if key.startswith(src):
                        put(f"{path}.stage.blocks.{j}." + key[len(src):], v, f"MLLA layers.{k}.blocks -> {name}")
            if isinstance(stage.downsample, PatchMerging) and k > 0:
                src = f"layers.{k - 1}.downsample."
                for key, v in state.items():
                    if key.startswith(src):
                        put(f"{path}.downsample." + key[len(src):], v, f"MLLA layers.{k - 1}.downsample -> {name}")
    if not out:
        raise CheckpointConversionError("Neither a ResNet-vd nor an MLLA checkpoint provided any tensor.")
    report.kept_init = [k for k in own if k not in out]
    return OrderedDict((prefix + k, v) for k, v in out.items()), report
