"""Training images that cannot be read: logged once, counted in the metrics, and the run stopped
with a checkpoint to resume from once they exceed the loader's ``max_bad_image_share``.

The train loader replaces such an image in its batch deterministically (see
:mod:`mlla_rtdetr.data.loader`) and reports it; :class:`BadImageHook` gathers the reports of all
ranks after every step, so every rank knows the same images, writes their count as the scalar
``data/bad_images`` (``metrics.json``, TensorBoard) and all ranks stop at the same iteration.
The images met so far are part of the trainer's checkpointed state: a resumed run counts on.
"""
from __future__ import annotations

import logging
import os
from typing import Dict

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..data.checks import listing
from ..errors import DataError, UserError

__all__ = ["BadImageHook", "METRIC"]

logger = logging.getLogger(__name__)

METRIC = "data/bad_images"


class _NoTracebackForUserErrors(logging.Filter):
    """detectron2's training loop logs every exception with its traceback; a user error (e.g. too
    many unreadable images) keeps only its message, which the entry point prints anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.msg, record.args = f"Training stopped: {record.exc_info[1]}", ()
            record.exc_info, record.exc_text = None, None
        return True


class BadImageHook(HookBase):
    """Args:
        loader: the train loader (``take_bad_images()``, ``num_samples``, ``max_bad_image_share``).
        checkpointer: the run's checkpointer; the stopping iteration is saved with it.

    Register it after the checkpoint and evaluation hooks (a stop saves the state after them).
    """

    def __init__(self, loader, checkpointer):
        self.loader = loader
        self.checkpointer = checkpointer
        self.bad: Dict[str, str] = {}
        self._filter = _NoTracebackForUserErrors()

    def before_train(self):
        logging.getLogger("detectron2.engine.train_loop").addFilter(self._filter)

    def after_train(self):
        logging.getLogger("detectron2.engine.train_loop").removeFilter(self._filter)

    def after_step(self):
        new = self.loader.take_bad_images()
        if comm.get_world_size() > 1:
            new = [item for part in comm.all_gather(new) for item in part]
        for file_name, reason in new:
            if file_name not in self.bad:
                self.bad[file_name] = reason
                logger.warning(f"Skipping an image that cannot be read (replaced in its batch, the same "
                               f"way on every run): {reason}")
        self.trainer.storage.put_scalar(METRIC, len(self.bad), smoothing_hint=False)
        total, share = self.loader.num_samples, self.loader.max_bad_image_share
        if len(self.bad) > share * total:
            self._stop(total, share)

    def _stop(self, total: int, share: float) -> None:
        it = self.trainer.iter
        name = f"model_{it:07d}"
        self.checkpointer.save(name, iteration=it)
        comm.synchronize()
        path = os.path.join(self.checkpointer.save_dir, f"{name}.pth")
        raise DataError(
            f"{len(self.bad)} of {total} training images ({100.0 * len(self.bad) / total:.2f}%) cannot be "
            f"read, more than dataloader.train.max_bad_image_share={share} allows:{listing(self.bad.values())}\n"
            f"The checkpoint of iteration {it} is saved ({path}). Fix or remove these images "
            "(tools/dataset_summary.py lists every problem) and continue with --resume, or allow more "
            "with dataloader.train.max_bad_image_share=..."
        )

    def state_dict(self):
        return {"bad_images": dict(self.bad)}

    def load_state_dict(self, state_dict):
        self.bad = dict(state_dict.get("bad_images", {}))
