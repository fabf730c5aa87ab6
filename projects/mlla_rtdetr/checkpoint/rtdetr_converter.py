"""Official RT-DETR (v1 ``rtdetr_pytorch`` / v2 ``rtdetrv2_pytorch``) checkpoints -> this code base.

Our modules keep the official sub-module names, using the v2 spelling everywhere, so a v2
state dict maps by identity and a v1 one differs only in two places:

==========================================  =========================================
official v1                                 ours (= official v2)
==========================================  =========================================
``encoder.input_proj.{i}.0.*`` (conv)       ``encoder.input_proj.{i}.conv.*``
``encoder.input_proj.{i}.1.*`` (BN)         ``encoder.input_proj.{i}.norm.*``
``decoder.enc_output.0.*`` (Linear)         ``decoder.enc_output.proj.*``
``decoder.enc_output.1.*`` (LayerNorm)      ``decoder.enc_output.norm.*``
==========================================  =========================================

HGNetv2 backbones (RT-DETR-L / X, RT-DETRv2-L / X / H) are timm's ``hgnetv2_b4/b5/b6`` here (see
``modeling/backbone/hgnetv2.py``); their official keys are respelled (any version):

==============================================================  ==============================================
official HGNetv2                                                ours (timm feature extractor in ``body``)
==============================================================  ==============================================
``backbone.stem.stem2a.conv.1.*`` (after a ZeroPad2d)           ``backbone.body.stem.stem2a.conv.*``
``backbone.stem.*``                                             ``backbone.body.stem.*``
``backbone.stages.{i}.*``                                       ``backbone.body.stages_{i}.*``
``...blocks.{j}.aggregation_squeeze_conv.*``                    ``...blocks.{j}.aggregation.0.*``
``...blocks.{j}.aggregation_excitation_conv.*``                 ``...blocks.{j}.aggregation.1.*``
==============================================================  ==============================================

Derived buffers of v2 (``decoder.anchors``, ``decoder.valid_mask``, ``*.num_points_scale``) are a
pure function of the architecture: they are never loaded; the model keeps the values it computed.

ImageNet backbone weights of the official recipes (``ResNet*_vd_*pretrained_from_paddle.pth``,
``PPHGNetV2_{L,X,H}_ssld_pretrained_from_paddle.pth``: the backbone's own keys, no prefix) are
recognized by :func:`detect_official_backbone` and loaded into a detector's backbone by
:func:`load_official_backbone`; ``train.init_checkpoint`` does both automatically.

Every source tensor must be used exactly once; when a target model (or state dict) is given,
every target key must be filled and shapes must agree, otherwise a
:class:`CheckpointConversionError` lists the offending keys in a table.

Python API::

    from mlla_rtdetr.checkpoint.rtdetr_converter import convert_official_rtdetr, load_official_rtdetr
    state, report = convert_official_rtdetr(torch.load(path, weights_only=True), version="auto")
    report = load_official_rtdetr(model, path)          # converts, checks and loads (strict)
    report = load_official_backbone(model, "PPHGNetV2_L_ssld_pretrained_from_paddle.pth")

CLI: ``tools/convert_rtdetr_checkpoint.py --input X.pth --output Y.pth``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from .io import read_checkpoint_file
from .report import format_shape, key_table
from .state_dict import CheckpointConversionError, extract_state_dict as _extract

__all__ = [
    "CheckpointConversionError",
    "ConversionReport",
    "DERIVED_SUFFIXES",
    "extract_state_dict",
    "export_official_rtdetr",
    "detect_rtdetr_version",
    "convert_official_rtdetr",
    "convert_official_resnet_vd",
    "convert_official_backbone",
    "detect_official_backbone",
    "hgnetv2_key_from_official",
    "hgnetv2_key_to_official",
    "is_official_rtdetr_checkpoint",
    "load_official_rtdetr",
    "load_official_resnet_vd",
    "load_official_backbone",
    "rename_official_rtdetr",
    "check_against_target",
]

# Buffers computed by the model from its construction arguments (never loaded).
DERIVED_SUFFIXES = ("decoder.anchors", "decoder.valid_mask", ".num_points_scale")

# (pattern, replacement) applied to official v1 keys.
_V1_RENAMES = (
    (re.compile(r"^encoder\.input_proj\.(\d+)\.0\."), r"encoder.input_proj.\1.conv."),
    (re.compile(r"^encoder\.input_proj\.(\d+)\.1\."), r"encoder.input_proj.\1.norm."),
    (re.compile(r"^decoder\.enc_output\.0\."), "decoder.enc_output.proj."),
    (re.compile(r"^decoder\.enc_output\.1\."), "decoder.enc_output.norm."),
)
_V1_MARKERS = (re.compile(r"^encoder\.input_proj\.\d+\.[01]\."), re.compile(r"^decoder\.enc_output\.[01]\."))
_V2_MARKERS = (
    re.compile(r"^encoder\.input_proj\.\d+\.(conv|norm)\."),
    re.compile(r"^decoder\.enc_output\.(proj|norm)\."),
    re.compile(r"^decoder\.(anchors|valid_mask)$"),
    re.compile(r"\.num_points_scale$"),
)
_TOP_LEVEL = ("backbone.", "encoder.", "decoder.")

# Official HGNetv2 key (relative to the backbone) <-> ours (timm feature extractor under ``body``).
_HGNETV2_FROM_OFFICIAL = (
    (re.compile(r"^stem\.(stem2[ab])\.conv\.1\."), r"body.stem.\1.conv."),
    (re.compile(r"^stem\."), "body.stem."),
    (re.compile(r"^stages\.(\d+)\."), r"body.stages_\1."),
    (re.compile(r"\.aggregation_squeeze_conv\."), ".aggregation.0."),
    (re.compile(r"\.aggregation_excitation_conv\."), ".aggregation.1."),
)
_HGNETV2_TO_OFFICIAL = (
    (re.compile(r"^body\.stem\.(stem2[ab])\.conv\."), r"stem.\1.conv.1."),
    (re.compile(r"^body\.stem\."), "stem."),
    (re.compile(r"^body\.stages_(\d+)\."), r"stages.\1."),
    (re.compile(r"\.aggregation\.0\."), ".aggregation_squeeze_conv."),
    (re.compile(r"\.aggregation\.1\."), ".aggregation_excitation_conv."),
)
# First keys of the official ImageNet backbone files.
_BACKBONE_MARKERS = {"resnet_vd": "conv1.conv1_1.", "hgnetv2": "stem.stem1."}
_BACKBONE_ROOTS = {"resnet_vd": ("conv1.", "res_layers."), "hgnetv2": ("stem.", "stages.")}


def _apply(rules, key: str) -> str:
    for pattern, repl in rules:
        key = pattern.sub(repl, key)
    return key


def hgnetv2_key_from_official(key: str) -> str:
    """Official HGNetv2 key (``stages.1.blocks.0.aggregation_squeeze_conv.conv.weight``, relative
    to the backbone) -> ours (``body.stages_1.blocks.0.aggregation.0.conv.weight``)."""
    return _apply(_HGNETV2_FROM_OFFICIAL, key)


def hgnetv2_key_to_official(key: str) -> str:
    """Inverse of :func:`hgnetv2_key_from_official`."""
    return _apply(_HGNETV2_TO_OFFICIAL, key)


@dataclass
class ConversionReport:
    """What a conversion did. ``str(report)`` gives a readable summary and table."""

    source: str = "raw"  # where the state dict was found: "ema.module", "model" or "raw"
    version: str = "v2"
    num_tensors: int = 0
    renamed: List[Tuple[str, str]] = field(default_factory=list)
    dropped_derived: List[str] = field(default_factory=list)
    dropped_frozen_bn_counters: List[str] = field(default_factory=list)
    kept_from_target: List[str] = field(default_factory=list)
    missing: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    unexpected: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    duplicates: List[Tuple[str, List[str]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch or self.duplicates)

    def table(self) -> str:
        """Fixed-width table of every problem (empty string when there is none)."""
        rows = [("missing in checkpoint", k, "-", format_shape(s)) for k, s in self.missing]
        rows += [("unexpected in checkpoint", k, format_shape(s), "-") for k, s in self.unexpected]
        rows += [("shape mismatch", k, format_shape(a), format_shape(b)) for k, a, b in self.shape_mismatch]
        rows += [("used more than once", k, ", ".join(srcs), "-") for k, srcs in self.duplicates]
        return key_table(("problem", "key (ours)", "checkpoint", "model"), rows)

    def __str__(self) -> str:
        parts = [
            f"RT-DETR checkpoint conversion: official {self.version} state dict from '{self.source}', "
            f"{self.num_tensors} tensors, {len(self.renamed)} renamed, {len(self.dropped_derived)} derived "
            f"buffers dropped, {len(self.kept_from_target)} model-computed buffers kept."
        ]
        parts += [f"note: {n}" for n in self.notes]
        if not self.ok:
            parts.append(self.table())
        return "\n".join(parts)


def _is_derived(key: str) -> bool:
    return any(key.endswith(s) for s in DERIVED_SUFFIXES)


def extract_state_dict(checkpoint: Mapping) -> Tuple["OrderedDict[str, torch.Tensor]", str]:
    """The state dict of an official RT-DETR checkpoint: ``ema.module`` (preferred), ``model``, or
    the mapping itself (see :mod:`mlla_rtdetr.checkpoint.state_dict`). Returns (state_dict, where_found)."""
    return _extract(checkpoint, ("ema.module", "model"))


def detect_rtdetr_version(state: Mapping[str, torch.Tensor]) -> str:
    """"v1" or "v2" from the naming of the encoder input projections / decoder enc_output."""
    v1 = any(p.search(k) for k in state for p in _V1_MARKERS)
    v2 = any(p.search(k) for k in state for p in _V2_MARKERS)
    if v1 and v2:
        raise CheckpointConversionError(
            "The checkpoint mixes official v1 keys (encoder.input_proj.{i}.0/1, decoder.enc_output.0/1) "
            "and v2 keys (.conv/.norm, .proj/.norm): it is not an official RT-DETR checkpoint."
        )
    if not (v1 or v2):
        raise CheckpointConversionError(
            "Cannot tell the RT-DETR version: no encoder.input_proj / decoder.enc_output keys found. "
            "Pass version='v1' or 'v2' explicitly, or check that this is an RT-DETR detector checkpoint."
        )
    return "v1" if v1 else "v2"


def _rename_v1(key: str) -> str:
    for pattern, repl in _V1_RENAMES:
        new, n = pattern.subn(repl, key)
        if n:
            return new
    return key


def _target_state(target) -> Optional[Dict[str, torch.Tensor]]:
    if target is None:
        return None
    if isinstance(target, nn.Module):
        return target.state_dict()
    return dict(target)


def _is_frozen_bn_counter(key: str, target: Mapping[str, torch.Tensor]) -> bool:
    """``num_batches_tracked`` of a norm that is a FrozenBatchNorm2d in the target (no counter)."""
    if not key.endswith(".num_batches_tracked") or key in target:
        return False
    base = key[: -len("num_batches_tracked")]
    return base + "running_mean" in target and base + "weight" in target


def _check_against_target(state, target, report: ConversionReport, derived_ok: bool = True):
    """Fill model-computed buffers from the target, record missing/unexpected/shape problems."""
    out = OrderedDict()
    for k, v in state.items():
        if k not in target:
            if _is_frozen_bn_counter(k, target):
                report.dropped_frozen_bn_counters.append(k)
                continue
            report.unexpected.append((k, tuple(v.shape)))
            continue
        if tuple(v.shape) != tuple(target[k].shape):
            report.shape_mismatch.append((k, tuple(v.shape), tuple(target[k].shape)))
            continue
        out[k] = v.to(target[k].dtype) if v.dtype != target[k].dtype and v.is_floating_point() else v
    for k, v in target.items():
        if k in state:
            continue
        if derived_ok and _is_derived(k):
            out[k] = v
            report.kept_from_target.append(k)
        elif k.endswith(".num_batches_tracked") and k[: -len("num_batches_tracked")] + "running_mean" in state:
            # The checkpoint came from FrozenBatchNorm2d layers (no counter); BatchNorm2d here.
            out[k] = v
            report.kept_from_target.append(k)
        else:
            report.missing.append((k, tuple(v.shape)))
    # Keep the target's key order (readable, deterministic files).
    return OrderedDict((k, out[k]) for k in target if k in out)


def _raise_if_bad(report: ConversionReport, what: str) -> None:
    if not report.ok:
        raise CheckpointConversionError(
            f"{what} does not match exactly ({len(report.missing)} missing, {len(report.unexpected)} "
            f"unexpected, {len(report.shape_mismatch)} shape mismatches, {len(report.duplicates)} "
            f"duplicates); nothing was loaded.\n{report.table()}"
        )


def rename_official_rtdetr(state: Mapping[str, torch.Tensor], version: str = "auto",
                           report: Optional[ConversionReport] = None
                           ) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """The pure key mapping: an official v1/v2 state dict -> our key names (derived v2 buffers
    dropped, HGNetv2 keys respelled). Stray and duplicated keys are recorded in the report; nothing
    is checked against a model (:func:`check_against_target` does that)."""
    detected = detect_rtdetr_version(state)
    if version not in ("auto", "v1", "v2"):
        raise ValueError(f"version must be 'auto', 'v1' or 'v2', got '{version}'.")
    if version != "auto" and version != detected:
        raise CheckpointConversionError(
            f"version='{version}' was requested but the keys are those of an official {detected} checkpoint."
        )
    report = report or ConversionReport()
    report.version, report.num_tensors = detected, len(state)
    report.unexpected.extend((k, tuple(v.shape)) for k, v in state.items() if not k.startswith(_TOP_LEVEL))
    hgnetv2 = any(k.startswith("backbone." + _BACKBONE_MARKERS["hgnetv2"]) for k in state)
    if hgnetv2:
        report.notes.append("HGNetv2 backbone: official keys respelled as timm's hgnetv2")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    sources: Dict[str, List[str]] = {}
    for k, v in state.items():
        if not k.startswith(_TOP_LEVEL):
            continue
        if _is_derived(k):
            report.dropped_derived.append(k)
            continue
        new = _rename_v1(k) if detected == "v1" else k
        if hgnetv2 and new.startswith("backbone."):
            new = "backbone." + hgnetv2_key_from_official(new[len("backbone."):])
        if new != k:
            report.renamed.append((k, new))
        sources.setdefault(new, []).append(k)
        out[new] = v
    report.duplicates = [(k, srcs) for k, srcs in sources.items() if len(srcs) > 1]
    return out, report


def check_against_target(state: Mapping[str, torch.Tensor], target: Union[nn.Module, Mapping[str, torch.Tensor]],
                         report: ConversionReport, what: str = "Official RT-DETR checkpoint"
                         ) -> "OrderedDict[str, torch.Tensor]":
    """``state`` with exactly the target's keys (model-computed buffers taken from the target), or
    :class:`CheckpointConversionError` with a table of every missing / unexpected / mismatched key."""
    out = _check_against_target(state, _target_state(target), report)
    _raise_if_bad(report, what)
    return out


def convert_official_rtdetr(
    state_dict_or_checkpoint: Mapping,
    version: str = "auto",
    target: Union[None, nn.Module, Mapping[str, torch.Tensor]] = None,
) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """Map an official RT-DETR v1/v2 checkpoint onto this code base's key names.

    Args:
        state_dict_or_checkpoint: a state dict, or a checkpoint with it under ``model`` or
            ``ema`` -> ``module`` (EMA preferred when both exist; ``report.source`` says which).
        version: "v1", "v2" or "auto" (detected from key names).
        target: optional model (or its state dict). When given, the result has exactly its keys:
            model-computed buffers are taken from it, and any missing / unexpected /
            shape-mismatched key raises :class:`CheckpointConversionError` with a table.

    Returns: (state dict with our key names, :class:`ConversionReport`). Without a target the
    derived v2 buffers are left out (load with ``strict=False`` or use :func:`load_official_rtdetr`).
    """
    state, where = extract_state_dict(state_dict_or_checkpoint)
    report = ConversionReport(source=where)
    if where.startswith("ema"):
        report.notes.append("using the EMA weights (ema.module)")
    out, report = rename_official_rtdetr(state, version, report)
    if target is not None:
        return check_against_target(out, target, report, f"Official RT-DETR {report.version} checkpoint"), report
    _raise_if_bad(report, f"Official RT-DETR {report.version} checkpoint")
    return out, report


def detect_official_backbone(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """"resnet_vd" or "hgnetv2" for the official ImageNet backbone weights (the backbone's own
    keys, optionally under ``backbone.``), None for anything else (detectors included)."""
    keys = [k[len("backbone."):] if k.startswith("backbone.") else k for k in state]
    if not keys or any(k.startswith(("encoder.", "decoder.")) for k in state):
        return None
    for kind, marker in _BACKBONE_MARKERS.items():
        roots = _BACKBONE_ROOTS[kind]
        if any(k.startswith(marker) for k in keys) and all(k.startswith(roots) for k in keys):
            return kind
    return None


def convert_official_backbone(
    state_dict_or_checkpoint: Mapping,
    kind: str = "auto",
    prefix: str = "",
    target: Union[None, nn.Module, Mapping[str, torch.Tensor]] = None,
) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """Map official ImageNet backbone weights onto our backbone's keys.

    Args:
        kind: "resnet_vd" (``ResNet*_vd_*pretrained_from_paddle.pth``: ``conv1.conv1_1...``,
            ``res_layers.{i}...``; same keys as :class:`PResNet`), "hgnetv2"
            (``PPHGNetV2_{L,X,H}_ssld_pretrained_from_paddle.pth``: ``stem.*``, ``stages.{i}...``;
            respelled for :class:`HGNetv2`) or "auto" (detected from the keys).
        prefix: prepended to every key (``"backbone."`` addresses a whole detector).
        target: the backbone (or its state dict, keys without prefix); enables the strict checks.
            ``num_batches_tracked`` counters are dropped for FrozenBatchNorm2d targets.
    """
    state, where = extract_state_dict(state_dict_or_checkpoint)
    if state and all(k.startswith("backbone.") for k in state):
        state = OrderedDict((k[len("backbone."):], v) for k, v in state.items())
    detected = detect_official_backbone(state)
    if kind == "auto":
        if detected is None:
            raise CheckpointConversionError(
                "Not an official ImageNet backbone checkpoint: expected ResNet-vd keys (conv1.conv1_1..., "
                f"res_layers...) or HGNetv2 keys (stem.stem1..., stages...); found e.g. {list(state)[:3]}."
            )
        kind = detected
    if kind not in _BACKBONE_MARKERS:
        raise ValueError(f"kind must be 'auto', 'resnet_vd' or 'hgnetv2', got '{kind}'.")
    report = ConversionReport(source=where, version=kind, num_tensors=len(state))
    roots = _BACKBONE_ROOTS[kind]
    report.unexpected.extend((k, tuple(v.shape)) for k, v in state.items() if not k.startswith(roots))
    if detected != kind:
        report.notes.append(f"the keys do not look like {kind} ImageNet weights")
    out = OrderedDict()
    for k, v in state.items():
        if not k.startswith(roots):
            continue
        new = hgnetv2_key_from_official(k) if kind == "hgnetv2" else k
        if new != k:
            report.renamed.append((k, new))
        out[new] = v
    tgt = _target_state(target)
    if tgt is not None:
        out = _check_against_target(out, tgt, report, derived_ok=False)
    _raise_if_bad(report, f"Official {kind} ImageNet checkpoint")
    if not out:
        raise CheckpointConversionError(f"The {kind} checkpoint has no {' / '.join(r + '*' for r in roots)} tensors.")
    return OrderedDict((prefix + k, v) for k, v in out.items()), report


def convert_official_resnet_vd(
    state_dict_or_checkpoint: Mapping,
    prefix: str = "",
    target: Union[None, nn.Module, Mapping[str, torch.Tensor]] = None,
) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """:func:`convert_official_backbone` for ResNet-vd ImageNet weights onto :class:`PResNet`."""
    return convert_official_backbone(state_dict_or_checkpoint, "resnet_vd", prefix=prefix, target=target)


def export_official_rtdetr(state: Mapping[str, torch.Tensor], version: str = "v2") -> "OrderedDict[str, torch.Tensor]":
    """Inverse renaming: our state dict -> official ``version`` key names (derived buffers are not
    added; the official model computes them). Used for round-trip checks and for sharing weights
    with the official code."""
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got '{version}'.")
    inverse = (
        (re.compile(r"^encoder\.input_proj\.(\d+)\.conv\."), r"encoder.input_proj.\1.0."),
        (re.compile(r"^encoder\.input_proj\.(\d+)\.norm\."), r"encoder.input_proj.\1.1."),
        (re.compile(r"^decoder\.enc_output\.proj\."), "decoder.enc_output.0."),
        (re.compile(r"^decoder\.enc_output\.norm\."), "decoder.enc_output.1."),
    )
    hgnetv2 = any(k.startswith("backbone.body.stem.stem1.") for k in state)
    out = OrderedDict()
    for k, v in state.items():
        if _is_derived(k):
            continue
        if hgnetv2 and k.startswith("backbone."):
            k = "backbone." + hgnetv2_key_to_official(k[len("backbone."):])
        if version == "v1":
            for pattern, repl in inverse:
                k, n = pattern.subn(repl, k)
                if n:
                    break
        out[k] = v
    return out


def is_official_rtdetr_checkpoint(checkpoint_or_path) -> bool:
    """True for official RT-DETR checkpoints (raw, ``model`` or ``ema.module``), i.e. files that are
    not detectron2 training checkpoints of this code base but hold RT-DETR detector keys."""
    ckpt = read_checkpoint_file(checkpoint_or_path) if isinstance(checkpoint_or_path, (str, Path)) else checkpoint_or_path
    if not isinstance(ckpt, Mapping):
        return False
    if "iteration" in ckpt or "trainer" in ckpt:  # written by our detectron2 checkpointer
        return False
    try:
        state, _ = extract_state_dict(ckpt)
        detect_rtdetr_version(state)
    except CheckpointConversionError:
        return False
    return any(k.startswith("backbone.") for k in state) and any(k.startswith("decoder.") for k in state)


def load_official_rtdetr(
    model: nn.Module, path_or_checkpoint, version: str = "auto", weights_only: bool = True
) -> ConversionReport:
    """Convert an official RT-DETR checkpoint (path or loaded dict), check it against ``model``
    and load it with ``strict=True``. Model-computed buffers keep the model's values.

    ``model`` may be the whole detector (keys ``backbone.``, ``encoder.``, ``decoder.``).
    """
    ckpt = (
        read_checkpoint_file(path_or_checkpoint, weights_only=weights_only)
        if isinstance(path_or_checkpoint, (str, Path))
        else path_or_checkpoint
    )
    state, report = convert_official_rtdetr(ckpt, version=version, target=model)
    model.load_state_dict(state, strict=True)
    return report


def _backbone_module(model: nn.Module) -> nn.Module:
    """The module backbone weights go to: a detector's ``backbone``, or the model itself."""
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, nn.Module) else model


def load_official_backbone(model: nn.Module, path_or_checkpoint, kind: str = "auto",
                           weights_only: bool = True) -> ConversionReport:
    """Load official ImageNet backbone weights (ResNet-vd or HGNetv2, see
    :func:`convert_official_backbone`) into ``model``: a backbone, or a detector whose
    ``backbone`` receives them (strict and checked; the encoder and decoder keep their values)."""
    ckpt = (
        read_checkpoint_file(path_or_checkpoint, weights_only=weights_only)
        if isinstance(path_or_checkpoint, (str, Path))
        else path_or_checkpoint
    )
    target = _backbone_module(model)
    state, report = convert_official_backbone(ckpt, kind, target=target)
    target.load_state_dict(state, strict=True)
    if target is not model:
        report.notes.append("loaded into the detector's backbone; encoder and decoder keep their values")
    return report


def load_official_resnet_vd(model: nn.Module, path_or_checkpoint, weights_only: bool = True) -> ConversionReport:
    """Load official ImageNet ResNet-vd weights into a :class:`PResNet` (or a detector's backbone)."""
    return load_official_backbone(model, path_or_checkpoint, "resnet_vd", weights_only=weights_only)
