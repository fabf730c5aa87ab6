"""Any timm ``features_only`` model as a detectron2 ``Backbone``.

The chosen feature levels come from timm's ``feature_info`` (channels and reduction per level),
so :meth:`TimmBackbone.output_shape` is exact for every family, and the encoder of a recipe picks
its ``in_channels`` / ``feat_strides`` up from it (``configs/models/rtdetr_r50vd.py``: the
``backbone_channels`` / ``backbone_strides`` config resolvers). Swapping the backbone of any
recipe is one override::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/rtdetrv2_r50vd_6x_coco.py \\
        'model.backbone={_target_: mlla_rtdetr.modeling.TimmBackbone, model_name: convnext_tiny}'

(an override whose ``_target_`` differs from the current one replaces the node instead of merging
into it, see ``engine/overrides.py``).

Nothing is downloaded by default (``pretrained=False``). ``pretrained=True`` asks timm for its
default weights (needs the network), ``pretrained="/path/weights.pth"`` loads a local file of the
full timm model through timm's ``pretrained_cfg_overlay=dict(file=...)``, which applies timm's
own checkpoint filters (classifier removal, key remapping).
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Union

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn

from ...errors import ConfigError
from ..layers import freeze_batch_norm

__all__ = ["TimmBackbone", "RTDETR_STRIDES"]

#: Strides of the three maps RT-DETR's hybrid encoder and decoder use.
RTDETR_STRIDES = (8, 16, 32)


def _level_name(stride: int) -> str:
    """detectron2 naming: the stride-2**k map is ``res{k}`` (res3 = stride 8)."""
    return f"res{int(round(math.log2(stride)))}"


class TimmBackbone(Backbone):
    """A timm model created with ``features_only=True``, returning ``{res{k}: (B, C, H/2**k, W/2**k)}``.

    Args:
        model_name: any timm model with feature extraction (``timm.list_models()``), e.g.
            ``"resnet50"``, ``"convnext_tiny"``, ``"efficientnet_b0"``, ``"hgnetv2_b4"``.
        out_indices: indices into the model's feature levels (``feature_info``; for ResNets level
            0 is the stride-2 stem, for ConvNeXt / HGNet the stride-4 stage). ``None``: the levels
            at strides 8, 16 and 32, the three maps RT-DETR uses.
        pretrained: ``False`` (default; random init), ``True`` (timm's default weights, downloaded)
            or the path of a local checkpoint of the full timm model.
        freeze_at: ``-1`` trains everything; ``k >= 0`` freezes the modules before feature level
            0 (the stem) and those of levels ``0 .. k-1`` (``requires_grad=False``), the
            official RT-DETR ``freeze_at`` semantics.
        freeze_norm: replace every BatchNorm (including timm's ``BatchNormAct2d``) by its frozen
            counterpart (:func:`mlla_rtdetr.modeling.layers.freeze_batch_norm`); other norms
            (LayerNorm, GroupNorm) are left as they are.
        **model_kwargs: passed to ``timm.create_model`` (``drop_path_rate``, ``in_chans``, ...).

    Input (B, C_in, H, W) -> {name: (B, C_level, ceil(H / stride), ceil(W / stride))}.
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Optional[Sequence[int]] = None,
        pretrained: Union[bool, str] = False,
        freeze_at: int = -1,
        freeze_norm: bool = False,
        **model_kwargs,
    ):
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            close = timm.list_models(f"*{model_name.split('_')[0].split('.')[0]}*")[:8]
            raise ConfigError(f"timm has no model '{model_name}'. Similar names: {close}.")
        kwargs = dict(features_only=True, exportable=True, **model_kwargs)
        kwargs.update(self._pretrained_kwargs(pretrained))
        if out_indices is not None:
            kwargs["out_indices"] = tuple(int(i) for i in out_indices)
        self.body = timm.create_model(model_name, **kwargs)
        self.model_name = model_name

        levels = self.body.feature_info.info  # every level of the model, not only the returned ones
        if out_indices is None:
            out_indices = self._levels_at_strides(levels, RTDETR_STRIDES, model_name)
        out_indices = [i % len(levels) for i in out_indices]
        returned = [i % len(levels) for i in self.body.feature_info.out_indices]
        if not set(out_indices) <= set(returned) or max(out_indices) != max(returned):
            # timm's default levels differ from the chosen ones: build the extractor for exactly those
            self.body = timm.create_model(model_name, **dict(kwargs, out_indices=tuple(out_indices)))
            returned = [i % len(levels) for i in self.body.feature_info.out_indices]
        self._positions = [returned.index(i) for i in out_indices]
        names = [_level_name(levels[i]["reduction"]) for i in out_indices]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"out_indices {list(out_indices)} of '{model_name}' select several maps with the same stride "
                f"{[levels[i]['reduction'] for i in out_indices]}; pick one level per stride."
            )
        self.out_indices = list(out_indices)
        self._out_features = names
        self._out_feature_channels = {n: int(levels[i]["num_chs"]) for n, i in zip(names, out_indices)}
        self._out_feature_strides = {n: int(levels[i]["reduction"]) for n, i in zip(names, out_indices)}

        self.freeze_at = freeze_at
        if freeze_at >= 0:
            self._freeze_levels(levels, freeze_at)
        self.freeze_norm = freeze_norm
        if freeze_norm:
            self.body = freeze_batch_norm(self.body)

    @staticmethod
    def _pretrained_kwargs(pretrained: Union[bool, str]) -> dict:
        if isinstance(pretrained, str) and pretrained:
            if not os.path.isfile(pretrained):
                raise ConfigError(f"pretrained weights '{pretrained}' do not exist (a local file is expected).")
            return dict(pretrained=True, pretrained_cfg_overlay=dict(file=os.path.abspath(pretrained)))
        return dict(pretrained=bool(pretrained))

    @staticmethod
    def _levels_at_strides(levels: List[dict], strides: Sequence[int], model_name: str) -> List[int]:
        """The last feature level at each of ``strides`` (timm lists one level per stage)."""
        by_stride = {int(info["reduction"]): i for i, info in enumerate(levels)}
        missing = [s for s in strides if s not in by_stride]
        if missing:
            raise ConfigError(
                f"timm model '{model_name}' has no feature map at stride(s) {missing} (its levels: "
                f"{[int(info['reduction']) for info in levels]}); give out_indices explicitly."
            )
        return [by_stride[s] for s in strides]

    def _level_module(self, name: str) -> Optional[nn.Module]:
        """The module of the feature extractor that produces a level (``feature_info`` names it
        with dots; extractors built with ``flatten_sequential`` use ``_`` for the first dot)."""
        for cand in (name, name.replace(".", "_", 1)):
            try:
                return self.body.get_submodule(cand)
            except AttributeError:
                continue
        return None  # pruned: the level comes after the last returned one

    def _freeze_levels(self, levels: List[dict], freeze_at: int) -> None:
        """``requires_grad=False`` for every parameter registered before the first parameter of
        the modules of levels ``freeze_at, freeze_at + 1, ...`` (timm registers the stem and
        the stages in forward order)."""
        later = set()
        for level in range(freeze_at, len(levels)):
            module = self._level_module(levels[level]["module"])
            if module is not None:
                later.update(id(p) for p in module.parameters())
        for p in self.body.parameters():
            if id(p) in later:
                break
            p.requires_grad_(False)

    @property
    def size_divisibility(self) -> int:
        return max(self._out_feature_strides.values())

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(channels=self._out_feature_channels[n], stride=self._out_feature_strides[n])
            for n in self._out_features
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.body(x)
        return {name: feats[p] for name, p in zip(self._out_features, self._positions)}

    def extra_repr(self) -> str:
        return f"model_name={self.model_name}, out_indices={self.out_indices}, freeze_at={self.freeze_at}"
