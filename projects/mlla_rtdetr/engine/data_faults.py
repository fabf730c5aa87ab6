"""Training images that cannot be read: logged once, counted in the metrics, and the run stopped
with a checkpoint to resume from once they exceed the loader's ``max_bad_image_share``.

The train loader replaces such an image in its batch deterministically (see
:mod:`mlla_rtdetr.data.loader`) and reports it; the trainer counts the reports of all ranks in the
step's flags (:mod:`.step_flags`) and :class:`BadImageHook` gathers their names on the steps that
have some, so every rank knows the same images, writes their count as the scalar
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
from ..errors import DataError

__all__ = ["BadImageHook", "METRIC"]

logger = logging.getLogger(__name__)

METRIC = "data/bad_images"


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

    def after_step(self):
        # The trainer took this step's reports from the loader; their count is in the step's flags,
        # so the names are gathered only on the steps where some rank met one.
        new = [(comm.get_rank(), item) for item in self.trainer.bad_images]
        if self.trainer.step_flags.bad_images and comm.get_world_size() > 1:
            new = [item for part in comm.all_gather(new) for item in part]
        for rank, (file_name, reason) in new:
            if file_name not in self.bad:
                self.bad[file_name] = reason
                logger.warning(f"Rank {rank} skips an image that cannot be read (replaced in its batch, the "
                               f"same way on every run): {reason}")
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
