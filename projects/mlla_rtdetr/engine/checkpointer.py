"""The training checkpointer and its hooks: atomic writes, weights-only loading, retention,
best-metric copy.

Files in ``train.output_dir``:

* ``model_{iter:07d}.pth``  periodic (the newest ``max_to_keep`` are kept),
* ``model_final.pth``      written when training finishes successfully,
* ``model_best.pth``       the weights with the best ``best_metric`` so far,
* ``last_checkpoint``      name of the newest of these; ``--resume`` continues from it.

Every file holds only tensors and primitive containers (``torch.load(weights_only=True)`` works),
the class names the model was trained with (``class_names``, used when it is fine-tuned on other
classes) and is written to a temporary file first and then ``os.replace``d, so a crash while
saving never leaves a truncated checkpoint or a ``last_checkpoint`` pointing at one.
Loading ``train.init_checkpoint`` (any format) is :mod:`mlla_rtdetr.engine.init_checkpoint`.
"""
from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase
from detectron2.utils import comm

from ..checkpoint.io import atomic_torch_save, atomic_write_text, read_checkpoint_file
from ..checkpoint.sources import is_url
from ..errors import CheckpointError, PathNotFoundError

__all__ = ["CHECKPOINT_FORMAT", "Checkpointer", "PeriodicCheckpointer", "BestCheckpointer"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mlla_rtdetr/detectron2-v1"
PERIODIC_RE = re.compile(r"^model_(\d{7})\.pth$")


class Checkpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saving and weights-only loading.

    Checkpointables (``trainer``, ``ema``) must return tensors/primitives from ``state_dict()``.
    ``save(name, **extra)`` stores ``extra`` (e.g. eval metrics) alongside them, and
    ``class_names`` (the training data's classes, in the model's class order) when given.
    """

    def __init__(self, model, save_dir: str = "", *, class_names: Optional[Sequence[str]] = None,
                 save_to_disk: Optional[bool] = None, **checkpointables: Any):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.class_names = [str(c) for c in class_names] if class_names is not None else None

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict(), "__format__": CHECKPOINT_FORMAT}
        if self.class_names is not None:
            data["class_names"] = list(self.class_names)
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_torch_save(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(last_filename_basename, os.path.join(self.save_dir, "last_checkpoint"))

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
