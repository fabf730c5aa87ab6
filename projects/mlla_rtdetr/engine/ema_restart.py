"""DEIM's EMA restart: the last, augmentation-free stage starts again from the best stage-1 weights.

Official DEIM (``DetSolver.fit``) reloads ``best_stg1.pth`` at the first epoch of the last stage
(the collate's ``stop_epoch``, 117 of 120 for DEIM-R18) with its generic resume loader and sets the
EMA decay to ``ema_restart_decay`` (0.9999). Restored are the model weights, the EMA (averaged
weights and update count, hence its warm-up), the optimizer state (Adam moments and steps) and the
AMP grad scaler. Not restored: the epoch / iteration counter, the lr schedule (a function of the
iteration) and the data order. Here the best stage-1 checkpoint is ``model_best.pth`` (the best
evaluation so far, saved by ``BestCheckpointer``), read when the restart iteration begins.

Two details differ from the official solver, on purpose: the lr of the restart iteration is the
schedule's (official: the one stored with the optimizer in ``best_stg1.pth``, for one iteration),
and a resumed run past the restart keeps the restart decay (the official decay is not saved).
The official solver also reloads ``best_stg1.pth`` after each later epoch whose evaluation did not
improve (decay lowered by 1e-4 each time); that is not reproduced.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

from detectron2.engine import HookBase

from ..checkpoint.io import read_checkpoint_file
from .ema import ModelEMA, unwrap_model

__all__ = ["EMARestartHook"]

logger = logging.getLogger(__name__)


class EMARestartHook(HookBase):
    """Restores model, EMA, optimizer (and grad scaler) from ``checkpoint_path`` before iteration
    ``restart_iter`` and sets the EMA decay to ``decay`` (module docstring).

    Args:
        ema: the run's EMA.
        checkpoint_path: the best stage-1 checkpoint (``<output_dir>/model_best.pth``).
        restart_iter: first iteration of the last stage (``restart_epoch * iters_per_epoch``).
        decay: EMA decay from the restart on (official ``ema_restart_decay``: 0.9999).
    """

    def __init__(self, ema: ModelEMA, checkpoint_path: str, restart_iter: int, decay: float = 0.9999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA restart decay must be in [0, 1), got {decay}")
        self.ema = ema
        self.checkpoint_path = checkpoint_path
        self.restart_iter = int(restart_iter)
        self.decay = float(decay)
        self.restored_from: Optional[int] = None  # iteration of the checkpoint restored, once done

    def before_train(self):
        if self.trainer.start_iter > self.restart_iter:  # resumed after the restart
            self.ema.decay = self.decay

    def before_step(self):
        if self.trainer.iter != self.restart_iter:
            return
        self.ema.decay = self.decay
        if not os.path.isfile(self.checkpoint_path):
            logger.warning(f"EMA restart at iteration {self.restart_iter}: no {self.checkpoint_path} (no evaluation "
                           f"before the last stage?); continuing from the current weights, EMA decay {self.decay}.")
            return
        state = read_checkpoint_file(self.checkpoint_path)
        unwrap_model(self.trainer.model).load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        optimizer = self.trainer.optimizer
        lrs = [group["lr"] for group in optimizer.param_groups]  # the schedule's lr of this iteration
        optimizer.load_state_dict(state["trainer"]["optimizer"])
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        scaler = getattr(self.trainer, "grad_scaler", None)
        if scaler is not None and scaler.is_enabled() and "grad_scaler" in state["trainer"]:
            scaler.load_state_dict(state["trainer"]["grad_scaler"])
        self.restored_from = int(state["trainer"]["iteration"])
        logger.info(f"EMA restart at iteration {self.restart_iter}: model, EMA ({self.ema.updates} updates) and "
                    f"optimizer restored from {self.checkpoint_path} (iteration {self.restored_from}); "
                    f"EMA decay {self.decay}.")
