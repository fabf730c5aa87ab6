"""Backbones made of a stem and a sequence of stages, with configurable stage blocks.

A :class:`StagedBackbone` runs ``stem -> stage_1 -> ... -> stage_n`` on (B, C, H, W) maps and
returns the requested stage outputs. Two placements of other blocks work on any such backbone,
chosen by name from :data:`STAGE_BLOCKS` in the constructor (so a config or a command-line override
selects them):

* ``stage_blocks={"res4": "mlla", "res5": "mlla"}``: the named stages are *replaced* by the block
  (a hybrid backbone, e.g. convolutional res2-res3 and MLLA res4-res5);
* ``insert_after={"res5": "mlla_attention"}``: the block is *inserted after* the named stages
  (its output feeds the next stage and is the stage's output).

A value is a registry name or ``{"name": ..., **cfg}`` with extra builder arguments. A builder is
called as::

    builder(in_channels, out_channels, stride, depth, **cfg)

and returns a module (B, in_channels, H, W) -> (B, out_channels, ceil(H / stride), ceil(W / stride)).
A replacement gets the stage's input / output channels, its stride relative to its input and its
number of blocks as ``depth`` (the default size; ``cfg`` may override it); an inserted block gets
``(C, C, 1, 1)``. Output channels and strides, hence ``output_shape()``, do not change. Unchanged
stages keep their parameter names (pretrained weights load); replaced stages keep the stage's key
prefix with the new block's keys below it; inserted blocks live under ``after_stage.<stage>.``.

Subclasses build their stem and stages, describe them with :meth:`StagedBackbone.set_stages` and
implement :meth:`forward_stem`; :class:`~mlla_rtdetr.modeling.backbone.resnet_vd.PResNet` and
:class:`~mlla_rtdetr.modeling.backbone.hgnetv2.HGNetv2` are two.
Stages are named by their module paths, so they may live in any container (a ``ModuleList``, a
wrapped model's ``ModuleDict``...) and keep their own key names.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
from detectron2.modeling import Backbone
from torch import nn

from ...errors import ConfigError
from ..layers import Registry

__all__ = ["STAGE_BLOCKS", "StageInfo", "StagedBackbone"]

#: name -> builder of a stage block (see the module docstring for the signature).
STAGE_BLOCKS = Registry("STAGE_BLOCKS")


@dataclass(frozen=True)
class StageInfo:
    """Shape of one stage: input / output channels, stride relative to its input, block count."""

    in_channels: int
    out_channels: int
    stride: int
    depth: int


class StagedBackbone(Backbone):
    """A detectron2 ``Backbone`` that is ``forward_stem`` followed by stages in order.

    Subclasses call :meth:`set_stages` at the end of their constructor with the module paths of
    their stages (e.g. ``res_layers.0``, ...; official key names stay), the stage names and
    :class:`StageInfo`, and the ``stage_blocks`` / ``insert_after`` arguments they were given.
    """

    def set_stages(self, paths: Sequence[str], names: Sequence[str], infos: Sequence[StageInfo],
                   stage_blocks: Optional[Mapping] = None, insert_after: Optional[Mapping] = None) -> None:
        if not (len(paths) == len(names) == len(infos)):
            raise ValueError(f"{len(paths)} stage paths, {len(names)} names and {len(infos)} infos differ.")
        for path in paths:
            self.get_submodule(path)  # exists
        self.stage_paths = tuple(paths)
        self.stage_names = tuple(names)
        self.stage_infos: Dict[str, StageInfo] = dict(zip(names, infos))
        self.stage_blocks = self._specs(stage_blocks, "stage_blocks")
        self.insert_after = self._specs(insert_after, "insert_after")
        for name, spec in self.stage_blocks.items():
            info = self.stage_infos[name]
            parent, _, child = self.stage_paths[self.stage_names.index(name)].rpartition(".")
            block = self._build(spec, name, info.in_channels, info.out_channels, info.stride, info.depth)
            setattr(self.get_submodule(parent) if parent else self, child, block)
        self.after_stage = nn.ModuleDict({
            name: self._build(spec, name, self.stage_infos[name].out_channels,
                              self.stage_infos[name].out_channels, 1, 1)
            for name, spec in self.insert_after.items()
        })

    def _specs(self, specs: Optional[Mapping], what: str) -> Dict[str, Any]:
        if specs is None:
            return {}
        if not isinstance(specs, Mapping):
            raise ConfigError(f"{what} maps stage names to blocks, e.g. {{'res5': 'mlla'}}; got {specs!r}.")
        out = {str(k): v for k, v in specs.items() if v is not None}
        unknown = [k for k in out if k not in self.stage_names]
        if unknown:
            raise ConfigError(
                f"{what} names stage(s) {unknown} that {type(self).__name__} does not build; built stages: "
                f"{list(self.stage_names)} (stages after the deepest out_feature are not built)."
            )
        return out

    def _build(self, spec, stage: str, in_channels: int, out_channels: int, stride: int, depth: int) -> nn.Module:
        if isinstance(spec, Mapping) and "depth" in spec:
            depth = int(spec["depth"])
            spec = {k: v for k, v in spec.items() if k != "depth"}
        try:
            return STAGE_BLOCKS.build(spec, in_channels, out_channels, stride, depth)
        except KeyError as e:
            raise ConfigError(f"Stage block of '{stage}': {e.args[0]}") from None

    def stage_modules(self) -> List[nn.Module]:
        """The stage modules in order."""
        return [self.get_submodule(p) for p in self.stage_paths]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> input map of the first stage."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (B, 3, H, W) -> {name: (B, C_name, H / stride, W / stride)} for the out_features."""
        x = self.forward_stem(x)
        outputs = {}
        for name, stage in zip(self.stage_names, self.stage_modules()):
            x = stage(x)
            if name in self.after_stage:
                x = self.after_stage[name](x)
            if name in self._out_features:
                outputs[name] = x
        return outputs
