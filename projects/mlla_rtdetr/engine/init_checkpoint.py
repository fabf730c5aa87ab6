"""``train.init_checkpoint``: find the file (path, URL or official name), tell its format, convert
it, fit the class-dependent tensors to the dataset's classes, and load it.

Formats (detected from the file, never from its name):

====================================  =========================================================
this code base's checkpoints          ``model`` (and ``ema``) weights, the class names trained on
official RT-DETR / RT-DETRv2          converted by :mod:`mlla_rtdetr.checkpoint.rtdetr_converter`
official ImageNet ResNet-vd / HGNetv2 converted, loaded into the backbone only
official MLLA (ImageNet, detection)   converted by :mod:`mlla_rtdetr.checkpoint.mlla_converter`
any other state dict of tensors       loaded by name (raw, under ``model``, ``module.`` prefix)
====================================  =========================================================

Fine-tuning on other classes (``strict=False``, what training does unless
``train.init_strict=True``): when the only tensors whose shapes differ are class-dependent ones
(declared by the model, see :mod:`mlla_rtdetr.checkpoint.class_rows`), or the checkpoint's class
names differ from the dataset's, those tensors start as a freshly built model's, and the rows of
the classes the dataset shares with the checkpoint (by name, synonyms or ``train.init_class_map``)
are copied from the checkpoint in the dataset's class order. The EMA then restarts from the
loaded model. Any other shape mismatch refuses to load, with a table.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..checkpoint import mlla_converter, rtdetr_converter
from ..checkpoint.class_rows import (
    COCO_CLASSES,
    class_dependent_keys,
    match_class_rows,
    normalize_class_name,
    transfer_class_rows,
)
from ..checkpoint.io import read_checkpoint_file
from ..checkpoint.report import shape_mismatch_table
from ..checkpoint.sources import resolve_checkpoint
from ..checkpoint.state_dict import CheckpointConversionError, extract_state_dict
from ..data.datasets.base import default_cache_dir
from ..errors import CheckpointError
from .checkpointer import CHECKPOINT_FORMAT
from .ema import ModelEMA, unwrap_model

__all__ = ["InitCheckpointError", "load_init_checkpoint", "local_checkpoint_path"]

logger = logging.getLogger(__name__)


class InitCheckpointError(CheckpointError):
    """train.init_checkpoint cannot be loaded (unreadable, or shapes do not match the model)."""


def local_checkpoint_path(spec: str) -> str:
    """The local file of ``spec``: a path, or a URL / official checkpoint name downloaded once into
    ``$MLLA_RTDETR_CACHE/checkpoints`` (default ``~/.cache/mlla_rtdetr/checkpoints``)."""
    return resolve_checkpoint(spec, default_cache_dir())


def _mismatches(module_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
                ) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
    return [(k, tuple(v.shape), tuple(module_state[k].shape)) for k, v in state.items()
            if k in module_state and tuple(v.shape) != tuple(module_state[k].shape)]


def _class_change_hint(module: nn.Module, mismatched_keys: Sequence[str]) -> str:
    """The way out when only class-dependent tensors differ, else ''."""
    class_keys = class_dependent_keys(module)
    if mismatched_keys and all(k in class_keys for k in mismatched_keys):
        return ("\nOnly class-dependent tensors differ: training fine-tunes them to the dataset's classes "
                "unless train.init_strict=True.")
    return ""


def _load_checked(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> Dict[str, List[str]]:
    mismatches = _mismatches(module.state_dict(), state)
    if mismatches:
        hint = _class_change_hint(module, [k for k, _, _ in mismatches])
        raise InitCheckpointError(
            f"{what}: {len(mismatches)} tensor(s) have a different shape than in the model, "
            "e.g. a different num_classes or architecture. Refusing to load:\n"
            + shape_mismatch_table(mismatches)
            + "\nChange the config to match the checkpoint, or drop these keys from the file." + hint
        )
    incompatible = module.load_state_dict(state, strict=False)
    return {"missing": list(incompatible.missing_keys), "unexpected": list(incompatible.unexpected_keys)}


def _fit_class_rows(model: nn.Module, state: Mapping[str, torch.Tensor], checkpoint_classes: Optional[Sequence[str]],
                    dataset_classes: Optional[Sequence[str]], class_map: Optional[Mapping[str, Optional[str]]],
                    what: str) -> Tuple[Mapping[str, torch.Tensor], Dict[str, Any]]:
    """``state`` with its class-dependent tensors fitted to the model's classes (see the module
    docstring), and what was done ({} when nothing was: same classes, or another mismatch that
    :func:`_load_checked` / the converter's check refuses)."""
    keys = class_dependent_keys(model)
    own = model.state_dict()
    present = [k for k in keys if k in state and k in own]
    if not present:
        return state, {}
    mismatched = _mismatches(own, state)
    if any(k not in keys or state[k].shape[1:] != own[k].shape[1:] for k, _, _ in mismatched):
        return state, {}
    n_src = {state[k].shape[0] - keys[k] for k in present}
    n_dst = {own[k].shape[0] - keys[k] for k in present}
    if len(n_src) != 1 or len(n_dst) != 1:
        return state, {}
    n_src, n_dst = n_src.pop(), n_dst.pop()
    assumed = ""
    if checkpoint_classes is None and n_src == len(COCO_CLASSES):
        checkpoint_classes, assumed = COCO_CLASSES, " (no class names recorded; 80 classes: taken as COCO's)"
    if checkpoint_classes is not None and len(checkpoint_classes) != n_src:
        logger.warning(f"{what} records {len(checkpoint_classes)} class names but has {n_src} class rows: "
                       "the names are not used.")
        checkpoint_classes = None
    if dataset_classes is not None and len(dataset_classes) != n_dst:
        dataset_classes = None
    renamed = (checkpoint_classes is not None and dataset_classes is not None
               and [normalize_class_name(c) for c in checkpoint_classes]
               != [normalize_class_name(c) for c in dataset_classes])
    if not mismatched and not renamed:
        return state, {}
    if checkpoint_classes is not None and dataset_classes is not None:
        rows = match_class_rows(dataset_classes, checkpoint_classes, class_map)
    else:
        rows = [None] * n_dst
    fitted = transfer_class_rows(state, own, {k: keys[k] for k in present}, rows)
    names = list(dataset_classes) if dataset_classes is not None else [f"class {i}" for i in range(n_dst)]
    carried = {names[i]: (checkpoint_classes[r] if checkpoint_classes is not None else f"class {r}")
               for i, r in enumerate(rows) if r is not None}
    new = [n for n, r in zip(names, rows) if r is None]
    logger.info(
        f"{what}: fine-tuning from {n_src} checkpoint classes{assumed} to the dataset's {n_dst}. "
        f"{len(fitted)} class-dependent tensors initialised as in a fresh model:\n  " + "\n  ".join(sorted(fitted))
        + f"\nRows carried over from the checkpoint ({len(carried)}): "
        + (", ".join(f"{d} <- {s}" for d, s in carried.items()) or "none")
        + f"\nNew classes (fresh rows) ({len(new)}): " + (", ".join(new) or "none")
    )
    out = dict(state)
    out.update(fitted)
    return out, {"reinitialized": sorted(fitted), "carried": carried, "new_classes": new,
                 "checkpoint_classes": list(checkpoint_classes) if checkpoint_classes is not None else None}


def _format_of(checkpoint: Mapping) -> str:
    """"mlla_rtdetr", "official RT-DETR", "official <kind> ImageNet backbone", "official MLLA" or
    "state_dict"."""
    if checkpoint.get("__format__") == CHECKPOINT_FORMAT:
        return "mlla_rtdetr"
    if rtdetr_converter.is_official_rtdetr_checkpoint(checkpoint):
        return "official RT-DETR"
    try:
        backbone = rtdetr_converter.detect_official_backbone(rtdetr_converter.extract_state_dict(checkpoint)[0])
    except CheckpointConversionError:
        backbone = None
    if backbone is not None:
        return f"official {backbone} ImageNet backbone"
    if mlla_converter.is_official_mlla_checkpoint(checkpoint):
        return "official MLLA"
    return "state_dict"


def load_init_checkpoint(model: nn.Module, path: str, ema: Optional[ModelEMA] = None, *,
                         class_names: Optional[Sequence[str]] = None,
                         class_map: Optional[Mapping[str, Optional[str]]] = None,
                         strict: bool = True) -> Dict[str, Any]:
    """Load ``train.init_checkpoint`` into ``model`` (and ``ema``).

    Args:
        path: a file, a URL or an official checkpoint's name (see :func:`local_checkpoint_path`).
        ema: the model's EMA: loaded from the checkpoint's EMA weights when it has them and the
            classes are unchanged, else restarted from the loaded model.
        class_names: the dataset's classes in the model's class order (to carry rows over).
        class_map: dataset class -> checkpoint class (None: a new class), over names and synonyms.
        strict: refuse any shape mismatch; False: class-dependent mismatches are a fine-tune.

    Returns ``{"format", "missing", "unexpected", "metrics", "ema"}`` plus, after a fine-tune,
    ``"reinitialized"`` (keys), ``"carried"`` ({dataset class: checkpoint class}) and ``"new_classes"``.
    """
    checkpoint = read_checkpoint_file(local_checkpoint_path(path))
    target = unwrap_model(model)
    report: Dict[str, Any] = {"format": None, "missing": [], "unexpected": [], "metrics": {}}
    if not isinstance(checkpoint, Mapping):
        raise InitCheckpointError(f"'{path}' holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    fmt = _format_of(checkpoint)
    ours = fmt == "mlla_rtdetr"
    what = f"init_checkpoint '{path}'"

    def fit(module: nn.Module, state: Mapping[str, torch.Tensor]):
        if strict:
            return state, {}
        recorded = checkpoint.get("class_names") if ours else None
        return _fit_class_rows(module, state, recorded, class_names, class_map, what)

    logger.info(f"{what} is {'a checkpoint of this code base' if ours else 'an ' + fmt + ' checkpoint'}"
                f"{'' if fmt in ('mlla_rtdetr', 'state_dict') else '; converting'}.")
    if fmt == "official RT-DETR":
        state, where = rtdetr_converter.extract_state_dict(checkpoint)
        conv = rtdetr_converter.ConversionReport(source=where)
        if where.startswith("ema"):
            conv.notes.append("using the EMA weights (ema.module)")
        state, conv = rtdetr_converter.rename_official_rtdetr(state, "auto", conv)
        state, fitted = fit(target, state)
        report.update(fitted)
        try:
            state = rtdetr_converter.check_against_target(state, target, conv,
                                                          f"Official RT-DETR {conv.version} checkpoint")
        except CheckpointConversionError as e:
            raise type(e)(f"{e}{_class_change_hint(target, [k for k, _, _ in conv.shape_mismatch])}") from e
        target.load_state_dict(state, strict=True)
        logger.info(str(conv))
    elif fmt.startswith("official"):
        loader = mlla_converter.load_official_mlla if fmt == "official MLLA" else rtdetr_converter.load_official_backbone
        logger.info(str(loader(target, checkpoint)))
    else:
        try:
            state, _ = extract_state_dict(checkpoint, ("model",))
        except CheckpointConversionError as e:
            raise InitCheckpointError(
                f"'{path}' is neither a checkpoint of this code base, an official RT-DETR/MLLA "
                "checkpoint, nor a plain state dict of tensors."
            ) from e
        state, fitted = fit(target, state)
        report.update(fitted)
        report.update(_load_checked(target, state, what))
        report["metrics"] = dict(checkpoint.get("metrics", {})) if ours else {}
        if report["missing"]:
            logger.warning(f"Keys missing in '{path}' (left as initialized):\n  " + "\n  ".join(report["missing"]))
        if report["unexpected"]:
            logger.warning(f"Keys in '{path}' not used by the model:\n  " + "\n  ".join(report["unexpected"]))
    report["format"] = fmt
    if ema is not None:
        ema_state = checkpoint.get("ema") if ours and "reinitialized" not in report else None
        if isinstance(ema_state, Mapping) and "module" in ema_state:
            state, _ = extract_state_dict(checkpoint, ("ema.module",), raw=False)
            _load_checked(ema.module, state, f"EMA of '{path}'")
            ema.updates = int(ema_state.get("updates", 0))
            report["ema"] = "loaded"
        else:
            ema.module.load_state_dict(target.state_dict())
            ema.updates = 0
            report["ema"] = "reset from the loaded model"
    logger.info(f"Loaded init_checkpoint '{path}' ({report['format']}); EMA: {report.get('ema', 'disabled')}")
    return report
