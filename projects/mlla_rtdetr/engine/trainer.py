"""Training loop: one trainer for CPU and CUDA, with optional AMP and gradient clipping.

detectron2's ``AMPTrainer`` asserts CUDA; :class:`Trainer` runs the same step on any device:

    data -> seed RNGs for (seed, rank, iteration) -> autocast forward -> losses
    -> step flags (one all-reduce: failures, finite check, stop request, unreadable images)
    -> zero_grad -> (scaled) backward -> unscale -> clip_grad_norm_ -> (scaler) step

A failure on any rank stops every rank at that iteration with one message naming the rank and the
cause, without relying on the launcher or the backend (:mod:`.step_flags`). Unreadable data (the
previous batch stands in, so the forward's collectives still meet) and a non-finite loss travel in
the step flags. An exception in the model call or backward may leave the other ranks waiting in a
collective this rank skipped, so it is announced out of band (:class:`.step_flags.FailureChannel`):
the failing rank leaves the process group, and every rank whose collective then breaks reads the
cause and stops with the same message.

Seeding every iteration from (seed, rank, iteration) makes random ops inside the model (e.g.
denoising-query noise) independent of what ran before, so a resumed run repeats exactly the
iterations of an uninterrupted one.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm

from ..errors import ConfigError, TrainingStopped, UserError, exit_now
from .preemption import stop_requested
from .step_flags import FAILURE_KINDS, Announcement, FailureChannel, StepFlags, agree_step_flags

__all__ = ["Trainer", "NonFiniteLossError", "TrainingStepError", "seed_iteration", "AMP_DTYPES", "resolve_amp_dtype"]

logger = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
              "bf16": torch.bfloat16}


def resolve_amp_dtype(dtype: str, device_type: str) -> str:
    """``train.amp.dtype``: "auto" -> "bfloat16" on CPU, "float16" on CUDA (and other devices)."""
    if dtype == "auto":
        return "bfloat16" if device_type == "cpu" else "float16"
    if dtype not in AMP_DTYPES:
        raise ConfigError(f"train.amp.dtype must be auto or one of {sorted(AMP_DTYPES)}, got {dtype!r}")
    return dtype


class NonFiniteLossError(TrainingStopped, FloatingPointError):
    """A loss term (or the matching) became NaN or inf; raised on every rank before the optimizer
    step (weights untouched)."""


class TrainingStepError(TrainingStopped, RuntimeError):
    """A rank's data, forward pass or losses raised; raised on every rank at that iteration."""


class _NoTracebackWithoutCause(logging.Filter):
    """detectron2's training loop logs every exception with its traceback. A user error (e.g. too
    many unreadable images) and the stop of a rank that did not fail itself keep only their
    message, which the entry point prints anyway; the failing rank's error keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, UserError) or (isinstance(error, TrainingStopped) and error.__cause__ is None):
            record.msg = str(error) if isinstance(error, TrainingStopped) else f"Training stopped: {error}"
            record.args = ()
            record.exc_info, record.exc_text = None, None
        return True


_TRACEBACK_FILTER = _NoTracebackWithoutCause()


def _non_finite_terms(loss_dict: Dict[str, torch.Tensor]) -> Dict[str, float]:
    return {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v.detach()).all()}


def _describe(code: int, error: Optional[BaseException], loss_dict: Dict[str, torch.Tensor]) -> Tuple[str, str]:
    """(kind, cause) of a failure: kind "nonfinite", "user" or "error" picks the exception class."""
    if code == 3:
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
        cause = f"non-finite loss terms {_non_finite_terms(loss_dict)}; all terms: {terms}"
    elif error is not None:
        cause = f"{type(error).__name__}: {error}"
    else:
        cause = ""
    kind = ("nonfinite" if code == 3 or isinstance(error, FloatingPointError)
            else "user" if isinstance(error, UserError) else "error")
    return kind, cause


def seed_iteration(seed: int, rank: int, iteration: int) -> None:
    """Seed python, numpy and torch (all devices) from (seed, rank, iteration)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(iteration)])
    value = int(state.generate_state(1, dtype=np.uint32)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class Trainer(SimpleTrainer):
    """SimpleTrainer with AMP (CPU or CUDA), gradient clipping, per-iteration seeding and a
    finite-loss check that names the iteration and the offending loss terms.

    Args:
        model, data_loader, optimizer: as in ``SimpleTrainer``.
        amp: enable ``torch.autocast`` on ``device_type``.
        amp_dtype: "float16", "bfloat16" or "auto" (:func:`resolve_amp_dtype`: bfloat16 on CPU,
            float16 on CUDA). float16 uses a GradScaler (loss scaling); bfloat16 does not need one.
        device_type: "cuda" or "cpu" (autocast / GradScaler device).
        clip_grad: ``dict(max_norm=..., norm_type=...)`` or None.
        seed: base seed for :func:`seed_iteration`; None disables per-iteration seeding.
        grad_scaler: an existing ``torch.amp.GradScaler`` (default: a new one when needed).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        amp: bool = False,
        amp_dtype: str = "auto",
        device_type: str = "cpu",
        clip_grad: Optional[Mapping] = None,
        seed: Optional[int] = None,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        gather_metric_period: int = 1,
    ):
        super().__init__(model, data_loader, optimizer, gather_metric_period=gather_metric_period)
        amp_dtype = resolve_amp_dtype(amp_dtype, device_type)
        if isinstance(model, torch.nn.DataParallel):
            raise ValueError("DataParallel is not supported: launch one process per device (DDP).")
        self.amp = bool(amp)
        self.amp_dtype = AMP_DTYPES[amp_dtype]
        self.device_type = device_type
        if self.amp and self.amp_dtype == torch.float16 and device_type == "cpu":
            logger.warning("float16 autocast on CPU is slow and poorly supported; prefer bfloat16.")
        use_scaler = self.amp and self.amp_dtype == torch.float16
        self.grad_scaler = grad_scaler or torch.amp.GradScaler(device_type, enabled=use_scaler)
        self.clip_grad = dict(clip_grad) if clip_grad else None
        self.seed = seed
        self._last_data = None
        self.step_flags: Optional[StepFlags] = None  # this step's agreed flags (read by hooks)
        self.bad_images = []  # (file_name, reason) of the unreadable images this rank met this step
        self._failures: Optional[FailureChannel] = None

    def train(self, start_iter: int, max_iter: int):
        train_loop_logger = logging.getLogger("detectron2.engine.train_loop")
        train_loop_logger.addFilter(_TRACEBACK_FILTER)
        self._failures = FailureChannel(on_stuck=self._stop_stuck_rank).start_watching()
        try:
            super().train(start_iter, max_iter)
        finally:
            self._failures.stop_watching()
            self._failures.acknowledge()  # after detectron2 logged the stop and ran after_train
            train_loop_logger.removeFilter(_TRACEBACK_FILTER)

    def run_step(self):
        assert self.model.training, "[Trainer] model was changed to eval mode!"
        start = time.perf_counter()
        failure: Optional[Tuple[int, BaseException]] = None
        try:
            data = next(self._data_loader_iter)
            self._last_data = data
        except Exception as e:
            # With several ranks the previous batch stands in, so that this rank's forward meets the
            # others' collectives (DDP buffers, SyncBN, the criterion's box count) before the step's
            # flags stop everyone.
            failure, data = (1, e), (self._last_data if comm.get_world_size() > 1 else None)
        data_time = time.perf_counter() - start
        take_bad = getattr(self.data_loader, "take_bad_images", None)
        self.bad_images = take_bad() if take_bad is not None else []
        # Seed after fetching: creating the loader iterator (first step after a start or resume)
        # draws from the global RNG, which must not shift the model's random ops.
        if self.seed is not None:
            seed_iteration(self.seed, comm.get_rank(), self.iter)

        loss_dict, losses = {}, None
        if data is not None:
            try:
                with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp):
                    loss_dict = self.model(data)
                if isinstance(loss_dict, torch.Tensor):
                    loss_dict = {"total_loss": loss_dict}
                losses = sum(v.float() for v in loss_dict.values())
            except Exception as e:
                self._stop_out_of_band(failure or (2, e))
        if failure is None and not bool(torch.isfinite(losses.detach())):
            failure = (3, None)
        # The step's one collective: before backward, whose all-reduce a stopped rank would never join.
        try:
            self.step_flags = agree_step_flags(failure[0] if failure else 0, stop_requested() is not None,
                                               len(self.bad_images))
        except Exception as e:
            self._stop_out_of_band(None, e)
        if self.step_flags.failed_ranks:
            self._stop_all(failure, loss_dict)

        self.optimizer.zero_grad(set_to_none=True)
        try:
            self.grad_scaler.scale(losses).backward()
        except Exception as e:
            self._stop_out_of_band((2, e))
        self.after_backward()
        grad_norm = None
        if self.clip_grad is not None:
            self.grad_scaler.unscale_(self.optimizer)
            # model order, as the official clip over model.parameters(): the norm's summation order
            params = [p for p in self.model.parameters() if p.grad is not None]
            if params:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, **self.clip_grad)
        self._write_metrics(loss_dict, data_time)
        if grad_norm is not None and comm.is_main_process():
            self.storage.put_scalar("grad_norm", float(grad_norm), smoothing_hint=False)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _stop_all(self, failure: Optional[Tuple[int, BaseException]], loss_dict: Dict[str, torch.Tensor]) -> None:
        """The step flags say a rank failed: raise on every rank, at this iteration, one error
        naming the first failing rank and its cause (the step is skipped: weights and the last
        checkpoint are untouched). The failing rank chains its own exception, whose traceback its
        log keeps."""
        code, error = failure if failure else (0, None)
        kind, cause = _describe(code, error, loss_dict)
        world = comm.get_world_size()
        if world == 1 and code == 1 and kind != "nonfinite":
            raise error  # a single process: the exception itself, unchanged
        reports = comm.all_gather((kind, cause)) if world > 1 else [(kind, cause)]  # rare: a rank failed
        rank = self.step_flags.failed_ranks[0]
        others = [r for r in self.step_flags.failed_ranks if r != rank]
        self._raise_stop(rank, self.step_flags.failures[rank], *reports[rank], world, others, error)

    def _stop_out_of_band(self, failure: Optional[Tuple[int, BaseException]], error: Optional[BaseException] = None):
        """This rank's model call, backward or step flags raised. If another rank announced a
        failure, this error is its consequence (a collective that rank left): stop with that rank's
        message. Otherwise the failure (code, exception) is this rank's own: announce it and stop."""
        world = comm.get_world_size()
        announcement = self._failures.received() if self._failures is not None else None
        if announcement is not None:
            self._raise_stop(announcement.rank, announcement.code, announcement.kind, announcement.cause, world,
                             [], None)
        if failure is None:
            raise error  # a collective failed and no rank said why: the backend's error is all there is
        code, error = failure
        kind, cause = _describe(code, error, {})
        if world == 1 and kind != "nonfinite":
            raise error
        rank = comm.get_rank()
        if self._failures is not None:
            self._failures.announce(Announcement(rank, self.iter, code, kind, cause))  # leaves the group
        self._raise_stop(rank, code, kind, cause, world, [], error)

    def _raise_stop(self, rank: int, code: int, kind: str, cause: str, world: int, others, error) -> None:
        raise self._stop_error(self.iter, rank, code, kind, cause, world, others, error) from error

    def _stop_stuck_rank(self, announcement: Announcement) -> None:
        """The failure watcher's action (another thread): this rank's main thread waits in a
        collective that the failed rank left and will not return; report the stop and exit."""
        a = announcement
        error = self._stop_error(a.iteration, a.rank, a.code, a.kind, a.cause, self._failures.world, [], None)
        logging.getLogger("detectron2.engine.train_loop").error(str(error))
        self._failures.acknowledge()
        exit_now(error)

    @staticmethod
    def _stop_error(iteration: int, rank: int, code: int, kind: str, cause: str, world: int, others,
                    error: Optional[BaseException]) -> Exception:
        """The one error every rank raises when a step failed (``error``: this rank's own cause)."""
        message = (
            f"Training stopped at iteration {iteration}"
            + (f" on all {world} processes: rank {rank} failed" if world > 1 else " (1 process): the step failed")
            + f" {FAILURE_KINDS[code]} ({cause})."
            + (f" Ranks {others} failed too." if others else "")
            + " The optimizer step was skipped; the last saved checkpoint is intact."
        )
        if kind == "nonfinite":
            message += " Try a lower lr, gradient clipping (train.clip_grad) or disabling AMP."
            return NonFiniteLossError(message)
        if world > 1 and error is None:
            message += f" Rank {rank}'s log has the traceback."
        return UserError(message) if kind == "user" else TrainingStepError(message)

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler.is_enabled():
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler.is_enabled() and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
