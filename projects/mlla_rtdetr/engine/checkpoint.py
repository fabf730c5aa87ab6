"""Checkpoints: atomic writes, weights-only loading, retention, best-metric copy, init loading.

Files in ``train.output_dir``:

* ``model_{iter:07d}.pth``  periodic (the newest ``max_to_keep`` are kept),
* ``model_final.pth``      written when training finishes successfully,
* ``model_best.pth``       the weights with the best ``best_metric`` so far,
* ``last_checkpoint``      name of the newest of these; ``--resume`` continues from it.

Every file holds only tensors and primitive containers (``torch.load(weights_only=True)`` works)
and is written to a temporary file first and then ``os.replace``d, so a crash while saving never
leaves a truncated checkpoint or a ``last_checkpoint`` pointing at one.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import re
import tempfile
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase
from detectron2.utils import comm

from ..checkpoint import mlla_converter, rtdetr_converter
from ..errors import CheckpointError, PathNotFoundError
from .ema import ModelEMA, unwrap_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpointer",
    "PeriodicCheckpointer",
    "BestCheckpointer",
    "InitCheckpointError",
    "is_url",
    "load_init_checkpoint",
    "local_checkpoint_path",
    "read_checkpoint_file",
    "shape_mismatch_table",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mlla_rtdetr/detectron2-v1"
PERIODIC_RE = re.compile(r"^model_(\d{7})\.pth$")


def _atomic_torch_save(obj: Any, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_write_text(text: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path), dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def is_url(path: str) -> bool:
    """True for ``https://...`` (and other ``scheme://``) checkpoint locations."""
    return "://" in str(path)


def local_checkpoint_path(path: str) -> str:
    """``path`` itself, or for a URL the file downloaded once into detectron2's cache (iopath)."""
    if not is_url(path):
        return path
    from detectron2.utils.file_io import PathManager

    try:
        return PathManager.get_local_path(path)
    except Exception as e:
        name = os.path.basename(path.split("?")[0]) or "checkpoint.pth"
        raise InitCheckpointError(
            f"Could not download checkpoint '{path}': {e}\nWithout network access, download it "
            f"elsewhere and pass the file instead, e.g. train.init_checkpoint=/path/to/{name}"
        ) from e


def read_checkpoint_file(path: str) -> Dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``; ``path`` may be a URL
    (downloaded once, see :func:`local_checkpoint_path`). :class:`PathNotFoundError` when the file
    is missing, :class:`CheckpointError` saying why when it is unreadable (truncated, empty, not
    written by ``torch.save``) or holds more than tensors and primitive values."""
    path = local_checkpoint_path(path)
    if not os.path.isfile(path):
        raise PathNotFoundError(f"Checkpoint '{path}' does not exist.")
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower() or head not in _TORCH_FILE_HEADS:
            raise _unreadable(path, e) from e
        raise CheckpointError(
            f"Could not read '{path}' with torch.load(weights_only=True): {str(e).splitlines()[0]}\n"
            "The file holds more than tensors and primitive values. If you trust it, convert it "
            "first (tools/convert_rtdetr_checkpoint.py --unsafe-load, "
            "tools/convert_mlla_checkpoint.py) and pass the converted file."
        ) from e
    except Exception as e:  # torch.load reports a damaged file in many ways
        raise _unreadable(path, e) from e


_TORCH_FILE_HEADS = (b"PK", b"\x80\x02")  # torch.save's zip archive; the legacy pickle format


def _unreadable(path: str, error: Exception) -> CheckpointError:
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return CheckpointError(
        f"Checkpoint '{path}' cannot be read: {os.path.getsize(path)} bytes that torch.load does "
        f"not understand ({detail}). The file is truncated, empty or not a checkpoint "
        "written by torch.save; copy it again or point to another one."
    )


class Checkpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saving and weights-only loading.

    Checkpointables (``trainer``, ``ema``) must return tensors/primitives from ``state_dict()``.
    ``save(name, **extra)`` stores ``extra`` (e.g. eval metrics) alongside them.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict(), "__format__": CHECKPOINT_FORMAT}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_torch_save(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        _atomic_write_text(last_filename_basename, os.path.join(self.save_dir, "last_checkpoint"))

    def _torch_load(self, f: str) -> Dict[str, Any]:
        return read_checkpoint_file(f)

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """detectron2's load; a missing or unreadable file is a user error, which says how to
        resume from an earlier checkpoint when ``path`` is the one ``--resume`` took."""
        if not path:
            return super().load(path, checkpointables)
        try:
            if not is_url(path) and not os.path.isfile(path):
                raise PathNotFoundError(f"Checkpoint '{path}' does not exist.")
            return super().load(path, checkpointables)
        except (CheckpointError, PathNotFoundError) as e:
            if self.has_checkpoint() and os.path.abspath(self.get_checkpoint_file()) == os.path.abspath(path):
                raise type(e)(
                    f"{e}\nIt is the checkpoint named in {os.path.join(self.save_dir, 'last_checkpoint')} "
                    "(--resume continues from it): write the name of an earlier model_*.pth there to "
                    "resume from that one."
                ) from e
            raise


class PeriodicCheckpointer(HookBase):
    """Saves ``model_{iter:07d}`` every ``period`` iterations, keeps the newest ``max_to_keep``
    of those on disk (counting files already there, so retention survives resumes), and saves
    ``model_final`` only when training finished successfully.

    Args:
        checkpointer: :class:`Checkpointer`.
        period: iterations between saves (0 or None: only ``model_final``).
        max_to_keep: periodic checkpoints kept (None: all).
        extra_fn: called at save time; returns extra primitives to store (e.g. latest metrics).
    """

    def __init__(self, checkpointer: Checkpointer, period: Optional[int], max_to_keep: Optional[int] = None,
                 extra_fn=None):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"checkpointer.max_to_keep must be >= 1 or None, got {max_to_keep}")
        self.checkpointer = checkpointer
        self.period = int(period or 0)
        self.max_to_keep = max_to_keep
        self.extra_fn = extra_fn or (lambda: {})

    def after_step(self):
        it = self.trainer.iter
        if self.period > 0 and (it + 1) % self.period == 0 and it + 1 < self.trainer.max_iter:
            self.save(f"model_{it:07d}")
            self._prune()

    def after_train(self):
        # TrainerBase.train increments iter past max_iter - 1 only when the loop completed.
        if self.trainer.iter >= self.trainer.max_iter:
            # The loop leaves iter = max_iter; store the last *completed* iteration like the
            # periodic checkpoints, so resuming it with a larger max_iter continues at max_iter.
            done = self.trainer.iter
            self.trainer.iter = done - 1
            try:
                self.save("model_final")
            finally:
                self.trainer.iter = done

    def save(self, name: str) -> None:
        if comm.is_main_process():
            self.checkpointer.save(name, iteration=self.trainer.iter, **self.extra_fn())
        comm.synchronize()

    def _prune(self) -> None:
        if not comm.is_main_process() or self.max_to_keep is None:
            return
        directory = self.checkpointer.save_dir
        periodic = sorted(f for f in os.listdir(directory) if PERIODIC_RE.match(f))
        for name in periodic[: max(0, len(periodic) - self.max_to_keep)]:
            os.remove(os.path.join(directory, name))


class BestCheckpointer(HookBase):
    """Saves ``model_best`` whenever ``metric`` (read from the event storage right after an
    evaluation, e.g. "bbox/AP") improves. The best value is part of the trainer state, so a
    resumed run does not overwrite a better checkpoint with a worse one.

    Place it after the evaluation hook so it sees the fresh metric.
    """

    def __init__(self, checkpointer: Checkpointer, metric: str, mode: str = "max", extra_fn=None):
        if mode not in ("max", "min"):
            raise ValueError(f"checkpointer.best_mode must be 'max' or 'min', got {mode!r}")
        self.checkpointer = checkpointer
        self.metric = metric
        self.mode = mode
        self.best_value: Optional[float] = None
        self.best_iter: Optional[int] = None
        self._last_checked_iter: Optional[int] = None
        self.extra_fn = extra_fn or (lambda: {})

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def _check(self) -> None:
        latest = self.trainer.storage.latest()
        if self.metric not in latest:
            return
        value, it = latest[self.metric]
        if it == self._last_checked_iter:
            return
        self._last_checked_iter = it
        value = float(value)
        if math.isnan(value) or not self._better(value):
            return
        self.best_value, self.best_iter = value, int(it)
        if comm.is_main_process():
            logger.info(f"New best {self.metric} = {value:.4f} at iteration {it}; saving model_best")
            self.checkpointer.save(
                "model_best", iteration=int(it), best_metric=self.metric, best_value=value, **self.extra_fn()
            )

    def after_step(self):
        self._check()

    def after_train(self):
        if self.trainer.iter >= self.trainer.max_iter:
            self._check()

    def state_dict(self):
        if self.best_value is None:
            return {}
        return {"metric": self.metric, "best_value": self.best_value, "best_iter": self.best_iter}

    def load_state_dict(self, state):
        if state.get("metric") == self.metric:
            self.best_value = float(state["best_value"])
            self.best_iter = int(state["best_iter"])


# ----------------------------------------------------------------------------- init checkpoint
class InitCheckpointError(CheckpointError):
    """train.init_checkpoint cannot be loaded (unreadable, or shapes do not match the model)."""


def shape_mismatch_table(mismatches: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]) -> str:
    """Readable table of (key, checkpoint shape, model shape)."""
    rows = [("key", "checkpoint", "model")] + [(k, str(tuple(a)), str(tuple(b))) for k, a, b in mismatches]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _strip_module_prefix(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    if state and all(k.startswith("module.") for k in state):
        return OrderedDict((k[len("module."):], v) for k, v in state.items())
    return OrderedDict(state)


def _load_checked(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> Dict[str, List[str]]:
    own = module.state_dict()
    mismatches = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatches:
        raise InitCheckpointError(
            f"{what}: {len(mismatches)} tensor(s) have a different shape than in the model, "
            "e.g. a different num_classes or architecture. Refusing to load:\n"
            + shape_mismatch_table(mismatches)
            + "\nChange the config to match the checkpoint, or drop these keys from the file."
        )
    incompatible = module.load_state_dict(state, strict=False)
    return {"missing": list(incompatible.missing_keys), "unexpected": list(incompatible.unexpected_keys)}


def _official_backbone_kind(checkpoint: Mapping) -> Optional[str]:
    """"resnet_vd" / "hgnetv2" for the official ImageNet backbone files, else None."""
    try:
        state, _ = rtdetr_converter.extract_state_dict(checkpoint)
    except rtdetr_converter.CheckpointConversionError:
        return None
    return rtdetr_converter.detect_official_backbone(state)


def _official_converter(checkpoint: Mapping):
    """(name, loader(model, checkpoint) -> report) of the official format of ``checkpoint``, or None."""
    if rtdetr_converter.is_official_rtdetr_checkpoint(checkpoint):
        return "official RT-DETR", rtdetr_converter.load_official_rtdetr
    backbone = _official_backbone_kind(checkpoint)
    if backbone is not None:
        return f"official {backbone} ImageNet backbone", rtdetr_converter.load_official_backbone
    if mlla_converter.is_official_mlla_checkpoint(checkpoint):
        return "official MLLA", mlla_converter.load_official_mlla
    return None


def load_init_checkpoint(model: nn.Module, path: str, ema: Optional[ModelEMA] = None) -> Dict[str, Any]:
    """Load ``train.init_checkpoint`` into ``model`` (and ``ema``).

    * a checkpoint of this code base: ``model`` weights into the model, ``ema`` weights into
      the EMA when both exist (otherwise the EMA restarts from the loaded model);
    * an official RT-DETR / MLLA checkpoint (detected by its keys): converted by
      ``mlla_rtdetr.checkpoint.*`` and loaded strictly;
    * official ImageNet backbone weights (ResNet-vd, HGNetv2; detected by their keys): converted
      and loaded strictly into ``model.backbone`` (encoder and decoder keep their values);
    * any other state dict (raw, under "model" or with a DDP "module." prefix): loaded by name.

    Missing and unexpected keys are logged; any shape mismatch raises :class:`InitCheckpointError`
    with a table. Returns ``{"format", "missing", "unexpected", "metrics"}``.
    """
    checkpoint = read_checkpoint_file(path)
    target = unwrap_model(model)
    report: Dict[str, Any] = {"format": None, "missing": [], "unexpected": [], "metrics": {}}
    if not isinstance(checkpoint, Mapping):
        raise InitCheckpointError(f"'{path}' holds a {type(checkpoint).__name__}, not a checkpoint dict.")
    ours = checkpoint.get("__format__") == CHECKPOINT_FORMAT
    official = None if ours else _official_converter(checkpoint)
    if official is not None:
        name, loader = official
        logger.info(f"init_checkpoint '{path}' is an {name} checkpoint; converting.")
        conv = loader(target, checkpoint)
        logger.info(str(conv))
        report["format"] = name
    else:
        state = checkpoint.get("model", checkpoint)
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InitCheckpointError(
                f"'{path}' is neither a checkpoint of this code base, an official RT-DETR/MLLA "
                "checkpoint, nor a plain state dict of tensors."
            )
        state = _strip_module_prefix(state)
        report.update(_load_checked(target, state, f"init_checkpoint '{path}'"))
        report["format"] = "mlla_rtdetr" if ours else "state_dict"
        report["metrics"] = dict(checkpoint.get("metrics", {})) if ours else {}
        if report["missing"]:
            logger.warning(f"Keys missing in '{path}' (left as initialized):\n  " + "\n  ".join(report["missing"]))
        if report["unexpected"]:
            logger.warning(f"Keys in '{path}' not used by the model:\n  " + "\n  ".join(report["unexpected"]))
    if ema is not None:
        ema_state = checkpoint.get("ema") if ours else None
        if isinstance(ema_state, Mapping) and "module" in ema_state:
            _load_checked(ema.module, _strip_module_prefix(ema_state["module"]), f"EMA of '{path}'")
            ema.updates = int(ema_state.get("updates", 0))
            report["ema"] = "loaded"
        else:
            ema.module.load_state_dict(target.state_dict())
            ema.updates = 0
            report["ema"] = "reset from the loaded model"
    logger.info(f"Loaded init_checkpoint '{path}' ({report['format']}); EMA: {report.get('ema', 'disabled')}")
    return report
