"""Checkpoint-and-requeue on preemption or time-out, at an iteration boundary.

Slurm warns a job before preempting or timing it out by sending a signal (``--signal=USR1@120``
for plain sbatch; submitit uses ``USR2`` and ``--signal-delay-s``). Acting inside the signal
handler would save a model caught in the middle of an optimizer step, so the handler only raises
a flag; :class:`PreemptionHook`, registered as the *last* trainer hook, sees the flag after the
step's other hooks (LR scheduler, EMA, writers) ran, saves a checkpoint of that iteration with the
run's checkpointer and then stops the process:

* inside a submitit job, submitit's own handler is called, which asks the job for its
  resubmission (``TrainJob.checkpoint`` -> the same run with ``--resume``) and requeues it;
* otherwise the process exits with :data:`PREEMPTED_EXIT_CODE`; restarting the same command with
  ``--resume`` continues from the saved iteration exactly.

All ranks agree on the stopping iteration: the flag is all-reduced (max) every step.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist
from detectron2.engine import HookBase

logger = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 3
"""Exit code of a run that saved a checkpoint and stopped because it was told to."""

_DEFAULT_SIGNALS = ("SIGUSR1", "SIGUSR2")


class _State:
    requested: Optional[int] = None  # signal number that asked to stop
    previous: Dict[int, object] = {}  # handlers replaced by install_handlers


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    if _State.requested is None:
        _State.requested = signum
        # logging from a signal handler may deadlock on the handler lock: write directly
        try:
            os.write(2, f"[preemption] caught {signal.Signals(signum).name}: will checkpoint "
                        "after the current iteration and stop\n".encode())
        except OSError:
            pass


def install_handlers(signals: Sequence[str] = _DEFAULT_SIGNALS) -> None:
    """Make the given signals request a checkpoint-and-stop instead of acting immediately.

    Keeps the previous handlers (e.g. submitit's requeue handler) to call after the checkpoint
    is saved. Call from the main thread of each training process.
    """
    for name in signals:
        sig = getattr(signal, name, None)
        if sig is None:
            raise ValueError(f"Unknown signal '{name}'.")
        previous = signal.getsignal(sig)
        if previous is not _handler:
            _State.previous[sig] = previous
            signal.signal(sig, _handler)


def stop_requested() -> Optional[int]:
    """Signal number that requested a stop in this process, or None."""
    return _State.requested


def reset() -> None:
    _State.requested = None


def _agree(local_flag: bool) -> bool:
    """True on every rank if any rank has the flag (one small all-reduce per call)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local_flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1 if local_flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _in_submitit_job() -> bool:
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


class PreemptionHook(HookBase):
    """Saves a checkpoint at an iteration boundary and stops when a stop signal arrived.

    Args:
        checkpointer: the run's detectron2 Checkpointer (the one periodic checkpoints use).
        signals: signal names that request the stop; handlers are installed in ``before_train``.
        on_saved: called after the checkpoint is written with (iteration, signal number);
            the default requeues through submitit inside a submitit job, else exits with
            :data:`PREEMPTED_EXIT_CODE`.

    Register it as the last hook so that it sees the state after all other after_step work.
    """

    def __init__(
        self,
        checkpointer,
        signals: Sequence[str] = _DEFAULT_SIGNALS,
        on_saved: Optional[Callable[[int, int], None]] = None,
    ):
        self.checkpointer = checkpointer
        self.signals = tuple(signals)
        self.on_saved = on_saved or stop_process

    def before_train(self):
        reset()
        install_handlers(self.signals)

    def after_step(self):
        if not _agree(stop_requested() is not None):
            return
        iteration = self.trainer.iter
        signum = stop_requested() or signal.SIGUSR1
        # every rank calls save (detectron2's Checkpointer writes on the main process only)
        self.checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        logger.warning(f"Stop requested: saved the checkpoint of iteration {iteration}; stopping.")
        self.on_saved(iteration, signum)


def stop_process(iteration: int, signum: int) -> None:
    """Hand over to submitit's requeue handler if there is one, else exit(PREEMPTED_EXIT_CODE)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    previous = _State.previous.get(signum)
    if _in_submitit_job() and callable(previous):
        # submitit: rank 0 dumps the job's resubmission and requeues (exits); other ranks return
        previous(signum, None)
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(PREEMPTED_EXIT_CODE)
