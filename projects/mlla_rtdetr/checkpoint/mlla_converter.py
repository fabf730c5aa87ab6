"""Official MLLA checkpoints (LeapLabTHU/MLLA) -> :class:`MLLABackbone` / :class:`MLLAClassifier`.

Our modules keep the official key names, so the work here is choosing the right tensors and
checking them; nothing is renamed. Accepted sources:

* ImageNet classification checkpoints of ``main.py``: the state dict under ``model`` and, when
  trained with EMA, ``state_dict_ema`` (pick with ``use_ema``); keys ``patch_embed.*``,
  ``layers.*``, ``norm.*``, ``head.*`` and the derived ``layers.{i}.blocks.{j}.attn.rope.rotations``.
* Official detection checkpoints (mmdetection, under ``state_dict``): ``backbone.*`` with the stage
  norms ``backbone.norm{i}``; the rest of the detector (``neck``, ``rpn_head``, ``roi_head``...)
  is ignored.
* A bare backbone state dict (``norm{i}``, ``patch_embed.*``, ``layers.*``).

For a backbone the derived RoPE tables (recomputed for every feature size) and the classification
``norm`` + ``head`` are ignored; stage norms missing from a classification checkpoint keep the
model's initialisation (the official detection code loads with ``strict=False`` for the same
reason). Every other mismatch - unknown keys, missing tensors, wrong shapes (another variant) -
raises :class:`CheckpointConversionError` with a table. The :class:`MLLAConversionReport` lists
which keys were used and why others were ignored.

Python API::

    state, report = convert_official_mlla(torch.load(p, weights_only=True), model=backbone)
    report = load_official_mlla(backbone, p)      # convert, check, load strictly

CLI: ``tools/convert_mlla_checkpoint.py --input MLLA_T.pth --output mlla_t_backbone.pth``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..modeling.backbone.mlla import MLLA_VARIANTS, MLLABackbone, MLLAClassifier
from .io import read_checkpoint_file
from .report import format_shape, key_table
from .state_dict import CheckpointConversionError, extract_state_dict

__all__ = [
    "CheckpointConversionError",
    "MLLAConversionReport",
    "extract_mlla_state_dict",
    "detect_mlla_format",
    "infer_mlla_variant",
    "convert_official_mlla",
    "load_official_mlla",
    "is_official_mlla_checkpoint",
]

_ROPE = re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.rope\.rotations$")
_BN = r"norm\.(weight|bias|running_mean|running_var|num_batches_tracked)"
_TRUNK = re.compile(
    r"^(patch_embed\.(conv1|conv2\.[01]|conv3\.[01])\.(conv\.weight|" + _BN + r")"
    r"|layers\.\d+\.blocks\.\d+\.(cpe1|cpe2|dwc|in_proj|act_proj|out_proj|norm1|norm2|attn\.qk|attn\.lepe"
    r"|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|layers\.\d+\.downsample\.conv\.[012]\.conv\.(weight|bias)|layers\.\d+\.downsample\.conv\.2\." + _BN + r")$"
)
_STAGE_NORM = re.compile(r"^norm(\d)\.(weight|bias)$")
_CLS_HEAD = re.compile(r"^(norm|head)\.(weight|bias)$")
_LAYER = re.compile(r"^layers\.(\d+)\.(blocks\.(\d+)|downsample)\.")


@dataclass
class MLLAConversionReport:
    """What a conversion did; ``str(report)`` is a readable summary."""

    source: str = "raw"  # where the state dict was found: "model", "state_dict_ema", "state_dict", "raw"
    kind: str = "backbone"  # official format: "classification", "detection" or "backbone"
    target: str = "backbone"
    num_tensors: int = 0
    used: List[str] = field(default_factory=list)
    ignored: Dict[str, List[str]] = field(default_factory=dict)  # reason -> keys
    kept_from_model: List[str] = field(default_factory=list)
    missing: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    unexpected: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    shape_mismatch: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def ignore(self, reason: str, key: str) -> None:
        self.ignored.setdefault(reason, []).append(key)

    @property
    def num_ignored(self) -> int:
        return sum(len(v) for v in self.ignored.values())

    def table(self, max_rows: int = 40) -> str:
        """Fixed-width table of the problems (at most ``max_rows`` rows, then a count)."""
        rows = [("missing in checkpoint", k, "-", format_shape(s)) for k, s in self.missing]
        rows += [("unexpected in checkpoint", k, format_shape(s), "-") for k, s in self.unexpected]
        rows += [("shape mismatch", k, format_shape(a), format_shape(b)) for k, a, b in self.shape_mismatch]
        return key_table(("problem", "key", "checkpoint", "model"), rows, max_rows=max_rows)

    def __str__(self) -> str:
        parts = [f"MLLA checkpoint conversion: official {self.kind} state dict from '{self.source}' "
                 f"({self.num_tensors} tensors) -> {self.target}: {len(self.used)} used, "
                 f"{self.num_ignored} ignored, {len(self.kept_from_model)} kept from the model."]
        for reason, keys in self.ignored.items():
            parts.append(f"ignored ({reason}): {len(keys)} keys, e.g. {keys[0]}")
        if self.kept_from_model:
            parts.append(f"kept from the model (not in the checkpoint): {', '.join(self.kept_from_model)}")
        parts += [f"note: {n}" for n in self.notes]
        if not self.ok:
            parts.append(self.table())
        return "\n".join(parts)


def extract_mlla_state_dict(checkpoint: Mapping, use_ema: bool = False) -> Tuple["OrderedDict[str, torch.Tensor]", str]:
    """The state dict of an official MLLA checkpoint (see :mod:`mlla_rtdetr.checkpoint.state_dict`).
    Returns (state_dict, where_found).

    ``use_ema=True`` takes ``state_dict_ema`` (error if absent); otherwise ``model``, then
    ``state_dict`` (mmdetection), then ``state_dict_ema`` when it is the only one, then the
    mapping itself. A DistributedDataParallel ``module.`` prefix is removed.
    """
    if use_ema:
        try:
            return extract_state_dict(checkpoint, ("state_dict_ema",), raw=False)
        except CheckpointConversionError as e:
            raise CheckpointConversionError(f"use_ema=True: {e} Drop --ema to use the 'model' weights.") from e
    return extract_state_dict(checkpoint, ("model", "state_dict", "state_dict_ema"))


def detect_mlla_format(state: Mapping[str, torch.Tensor]) -> str:
    """"detection" (mmdetection, ``backbone.*``), "classification" (``head``/``norm``) or
    "backbone" (``norm{i}``); raises when the keys are not those of an MLLA model."""
    if any(k.startswith("backbone.patch_embed.") for k in state):
        return "detection"
    if not any(k.startswith("patch_embed.") for k in state) or not any(k.startswith("layers.") for k in state):
        raise CheckpointConversionError(
            "This is not an MLLA checkpoint: no patch_embed.* / layers.* keys (nor backbone.patch_embed.* "
            f"of an official detection checkpoint). First keys: {list(state)[:5]}."
        )
    if any(_STAGE_NORM.match(k) for k in state):
        return "backbone"
    return "classification"


def infer_mlla_variant(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Name of the published variant with this stem width and these depths, else None.
    (Head counts do not change any shape, so MLLA-T/S are told apart by their depths.)"""
    key = "patch_embed.conv3.1.conv.weight"
    if key not in state:
        return None
    embed_dim = int(state[key].shape[0])
    depths = [0, 0, 0, 0]
    for k in state:
        m = _LAYER.match(k)
        if m and m.group(3) is not None and int(m.group(1)) < 4:
            depths[int(m.group(1))] = max(depths[int(m.group(1))], int(m.group(3)) + 1)
    for name, cfg in MLLA_VARIANTS.items():
        if cfg["embed_dim"] == embed_dim and tuple(cfg["depths"]) == tuple(depths):
            return name
    return None


def _classify_key(key: str, kind: str, target: str) -> Tuple[Optional[str], Optional[str]]:
    """(our key or None, reason when ignored). Unknown keys return (None, None)."""
    if kind == "detection":
        if not key.startswith("backbone."):
            return None, "detector neck/heads (not part of the backbone)"
        key = key[len("backbone."):]
    if _ROPE.match(key):
        return None, "derived RoPE table (recomputed for each feature size)"
    if _TRUNK.match(key):
        return key, None
    if _CLS_HEAD.match(key):
        if target == "classifier":
            return key, None
        return None, "classification head (final norm + head)"
    if _STAGE_NORM.match(key):
        if target == "backbone":
            return key, None
        return None, "detection stage norm (not part of the classifier)"
    return None, None


def _hint(report: MLLAConversionReport, state, model_state) -> None:
    got, want = infer_mlla_variant(state), infer_mlla_variant(model_state)
    if got != want:
        report.notes.append(f"the checkpoint looks like {got or 'an unknown variant'} but the model is "
                            f"{want or 'an unknown variant'}: build the model with the matching variant")


def convert_official_mlla(
    checkpoint: Mapping,
    model: Union[None, nn.Module, Mapping[str, torch.Tensor]] = None,
    target: Optional[str] = None,
    prefix: str = "",
    use_ema: bool = False,
) -> Tuple["OrderedDict[str, torch.Tensor]", MLLAConversionReport]:
    """Select and check the tensors of an official MLLA checkpoint for our model.

    Args:
        checkpoint: a loaded checkpoint or state dict (see module docstring for the formats).
        model: optional :class:`MLLABackbone` / :class:`MLLAClassifier` (or its state dict). When
            given, the result has exactly the model's keys: stage norms absent from the checkpoint
            keep the model's values, tensors of parts the model does not build (stages after the
            deepest ``out_features``, norms of stages not output) are ignored, and anything else
            that does not match raises :class:`CheckpointConversionError`.
        target: "backbone" or "classifier"; default from ``model`` (classifier if it is an
            :class:`MLLAClassifier`), else "backbone".
        prefix: prepended to every output key (``"backbone."`` addresses a whole detector).
        use_ema: take ``state_dict_ema`` of a classification checkpoint.

    Returns: (state dict, :class:`MLLAConversionReport`).
    """
    if target is None:
        target = "classifier" if isinstance(model, MLLAClassifier) else "backbone"
    if target not in ("backbone", "classifier"):
        raise ValueError(f"target must be 'backbone' or 'classifier', got '{target}'.")
    state, where = extract_mlla_state_dict(checkpoint, use_ema=use_ema)
    kind = detect_mlla_format(state)
    report = MLLAConversionReport(source=where, kind=kind, target=target, num_tensors=len(state))
    if target == "classifier" and kind != "classification":
        raise CheckpointConversionError(
            f"A classifier needs an ImageNet classification checkpoint (with norm/head); this is an "
            f"official {kind} checkpoint. Load it into an MLLABackbone instead."
        )

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in state.items():
        new, reason = _classify_key(k, kind, target)
        if new is not None:
            out[new] = v
        elif reason is not None:
            report.ignore(reason, k)
        else:
            report.unexpected.append((k, tuple(v.shape)))

    if model is not None:
        model_state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
        out = _check_against_model(out, model_state, kind, report)
        if report.shape_mismatch or report.missing:
            _hint(report, out, model_state)
    if not report.ok:
        raise CheckpointConversionError(
            f"Official MLLA {kind} checkpoint does not match ({len(report.missing)} missing, "
            f"{len(report.unexpected)} unexpected, {len(report.shape_mismatch)} shape mismatches); "
            f"nothing was loaded.\n" + "\n".join(report.notes + [report.table()])
        )
    report.used = [k for k in out if k not in report.kept_from_model]
    return OrderedDict((prefix + k, v) for k, v in out.items()), report


def _check_against_model(state, model_state, kind, report):
    out = OrderedDict()
    built_stages = {int(m.group(1)) for k in model_state if (m := _LAYER.match(k))}
    for k, v in state.items():
        if k not in model_state:
            m, sn = _LAYER.match(k), _STAGE_NORM.match(k)
            if m and (int(m.group(1)) not in built_stages or m.group(2) == "downsample"):
                report.ignore("stage not built by this model (beyond its deepest out_feature)", k)
            elif sn:
                report.ignore("norm of a stage that is not an output (out_features)", k)
            else:
                report.unexpected.append((k, tuple(v.shape)))
            continue
        if tuple(v.shape) != tuple(model_state[k].shape):
            report.shape_mismatch.append((k, tuple(v.shape), tuple(model_state[k].shape)))
            continue
        out[k] = v.to(model_state[k].dtype)
    for k, v in model_state.items():
        if k in state:
            continue
        if kind == "classification" and _STAGE_NORM.match(k):
            out[k] = v
            report.kept_from_model.append(k)
        else:
            report.missing.append((k, tuple(v.shape)))
    if report.kept_from_model:
        report.notes.append("classification checkpoints have no stage norms: norm{i} keep the model's "
                            "initialisation (as in the official detection code)")
    return OrderedDict((k, out[k]) for k in model_state if k in out)


def is_official_mlla_checkpoint(checkpoint) -> bool:
    """True for official MLLA checkpoints (classification, mmdetection detection, bare backbone)
    and for files written by ``tools/convert_mlla_checkpoint.py``; False for anything holding
    RT-DETR ``encoder.*`` / ``decoder.*`` weights (a detector of this code base)."""
    if not isinstance(checkpoint, Mapping):
        return False
    try:
        state, _ = extract_mlla_state_dict(checkpoint)
        detect_mlla_format(state)
    except CheckpointConversionError:
        return False
    return not any(k.startswith(("encoder.", "decoder.")) for k in state)


def _mlla_module(model: nn.Module) -> nn.Module:
    """The module the weights go to: the model itself, or a detector's ``backbone``."""
    if isinstance(model, (MLLABackbone, MLLAClassifier)):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, MLLABackbone):
        return backbone
    raise CheckpointConversionError(
        f"An official MLLA checkpoint can only be loaded into an MLLABackbone, an MLLAClassifier or a "
        f"detector whose .backbone is an MLLABackbone; got {type(model).__name__} "
        f"(backbone: {type(backbone).__name__ if backbone is not None else None}).")


def load_official_mlla(model: nn.Module, path_or_checkpoint, use_ema: bool = False,
                       weights_only: bool = True) -> MLLAConversionReport:
    """Convert an official MLLA checkpoint (path or loaded dict), check it against ``model`` and
    load it with ``strict=True``. ``model``: :class:`MLLABackbone`, :class:`MLLAClassifier`, or a
    detector with an MLLA ``backbone`` (only the backbone is loaded; the rest keeps its values)."""
    ckpt = (read_checkpoint_file(path_or_checkpoint, weights_only=weights_only)
            if isinstance(path_or_checkpoint, (str, Path)) else path_or_checkpoint)
    target = _mlla_module(model)
    state, report = convert_official_mlla(ckpt, model=target, use_ema=use_ema)
    target.load_state_dict(state, strict=True)
    if target is not model:
        report.notes.append("loaded into the detector's backbone; encoder and decoder keep their values")
    return report
