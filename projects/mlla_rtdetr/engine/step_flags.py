"""What every process must know after each training step, agreed by one small all-reduce.

Under DDP a process that stops alone leaves the others waiting in their next collective (until
the process-group timeout over NCCL). :func:`agree_step_flags` therefore runs once per step,
after the forward pass and the losses and before backward, on every process, and carries every
reason to stop or to talk:

* per rank, whether and where its step failed (:data:`FAILURE_KINDS`: the data, the forward pass
  and losses, a non-finite loss), so every rank stops at the same iteration;
* whether a stop (preemption / time-out signal) was requested on any rank
  (:class:`~mlla_rtdetr.engine.preemption.PreemptionHook`);
* how many unreadable training images the ranks met in this step; only then are their names
  gathered (:class:`~mlla_rtdetr.engine.data_faults.BadImageHook`).

The vector is ``world_size + 2`` int32 values summed across ranks: one collective per step
whatever happened, and a second one (gathering messages or image names) only on the rare steps
where the flags say every rank needs it.

A rank whose *model call* raises cannot take part in the flags: the other ranks may be waiting in a
collective of the forward pass (DDP's buffer broadcast, SyncBN, the criterion's box count) that it
skipped, and any collective it started next would pair with theirs. It announces its failure out of
band instead (:class:`FailureChannel`): the cause goes to the process group's key-value store
(the TCP store every launcher sets up, independent of the collectives) and the rank leaves the
process group. A rank whose own collective then fails reads the announcement and stops with the
failing rank's message; a rank still waiting in a collective (which neither gloo nor NCCL ends
while the failed process lives) is stopped by its watcher thread with the same message.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from typing import Callable, List, Optional, Tuple

import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["FAILURE_KINDS", "StepFlags", "agree_step_flags", "Announcement", "FailureChannel"]

logger = logging.getLogger(__name__)

FAILURE_KINDS = ("", "reading its data", "in the forward pass or the losses", "with a non-finite loss")
"""Index = failure code of a rank in :attr:`StepFlags.failures` (0: no failure)."""


@dataclasses.dataclass(frozen=True)
class StepFlags:
    failures: Tuple[int, ...]  # per rank: index into FAILURE_KINDS
    stop_requested: bool
    bad_images: int  # unreadable images met by all ranks in this step

    @property
    def failed_ranks(self) -> List[int]:
        return [rank for rank, code in enumerate(self.failures) if code]


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree_step_flags(failure: int = 0, stop_requested: bool = False, bad_images: int = 0) -> StepFlags:
    """This rank's flags in, every rank's agreed flags out (one all-reduce when distributed).
    Every rank of the group must call it at the same point of the same step."""
    world, rank = comm.get_world_size(), comm.get_rank()
    if world == 1:
        return StepFlags((int(failure),), bool(stop_requested), int(bad_images))
    local = torch.zeros(world + 2, dtype=torch.int32)
    local[rank], local[world], local[world + 1] = int(failure), int(bool(stop_requested)), int(bad_images)
    shared = local.to(_collective_device())
    dist.all_reduce(shared)
    values = shared.tolist()
    return StepFlags(tuple(values[:world]), values[world] > 0, values[world + 1])



@dataclasses.dataclass(frozen=True)
class Announcement:
    """A rank's failure, as it announced it."""

    rank: int
    iteration: int
    code: int  # index into FAILURE_KINDS
    kind: str  # "error", "user" or "nonfinite"
    cause: str


class FailureChannel:
    """The out-of-band path of a failure in the model call or backward (see the module docstring),
    over the launcher's key-value store. Create it when training starts; without a process group
    (or a store) it does nothing and :meth:`received` is always None.

    A collective waiting for a rank that left cannot be interrupted on every backend (gloo keeps
    waiting while the failed process lives), so :meth:`start_watching` runs a daemon thread: when
    another rank announces a failure and this rank's main thread has not taken it up within
    ``grace_s`` (it is stuck in such a collective), the thread calls ``on_stuck(announcement)``,
    which reports the stop and ends the process."""

    ACK_WAIT_S = 30.0  # how long a failing rank waits for the others to report its failure

    def __init__(self, on_stuck: Optional[Callable[[Announcement], None]] = None, grace_s: float = 3.0,
                 poll_s: float = 1.0):
        self.world, self.rank = comm.get_world_size(), comm.get_rank()
        self.store = _default_store() if self.world > 1 else None
        self.backend = dist.get_backend() if self.store is not None else None
        # torchrun's store outlives a restart of the workers: keys are per attempt
        self.prefix = f"mlla_rtdetr/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        self.on_stuck, self.grace_s, self.poll_s = on_stuck, grace_s, poll_s
        self._stop = threading.Event()
        self._claim = threading.Lock()
        self._taken: Optional[Announcement] = None  # the announcement this rank reports
        self._acknowledged = False

    def _key(self, rank: int) -> str:
        return f"{self.prefix}failed/{rank}"

    def announce(self, announcement: Announcement) -> None:
        """On the failing rank: publish ``announcement``, leave the process group and wait until
        the others have reported it (at most ``ACK_WAIT_S``; this rank may host the store they
        read it from). Afterwards this process is not distributed."""
        if self.store is None:
            return
        self.stop_watching()
        self.store.set(self._key(announcement.rank), json.dumps(dataclasses.asdict(announcement)))
        _leave_process_group(self.backend)
        deadline = time.monotonic() + self.ACK_WAIT_S
        while time.monotonic() < deadline:
            try:
                if self.store.add(self.prefix + "acknowledged", 0) >= self.world - 1:
                    return
            except (RuntimeError, OSError):  # DistNetworkError: the rank hosting the store has ended
                return
            time.sleep(0.05)

    def announcement(self) -> Optional[Announcement]:
        """The lowest-ranked announcement of another rank, if any (a store lookup per rank: what
        the watcher does once per poll)."""
        found = [r for r in range(self.world) if r != self.rank and self.store.check([self._key(r)])]
        if not found:
            return None
        return Announcement(**json.loads(self.store.get(self._key(found[0])).decode()))

    def received(self) -> Optional[Announcement]:
        """On the main thread, after this rank's model call, backward or step flags raised: the
        lowest-ranked announcement of another rank (this rank then leaves the broken process
        group), or None when no other rank announced one (the error is this rank's own). Call
        :meth:`acknowledge` once the stop is logged."""
        if self.store is None:
            return None
        announcement = self.announcement()
        if announcement is None:
            return None
        self._take(announcement)
        _leave_process_group(self.backend)
        return self._taken  # the watcher's, if it took one first: every report names the same cause

    def _take(self, announcement: Announcement) -> bool:
        """Claim the report of ``announcement`` for the calling thread; False if already claimed."""
        with self._claim:
            if self._taken is not None:
                return False
            self._taken = announcement
            self.stop_watching()
            return True

    def acknowledge(self) -> None:
        """Tell the failing rank this rank has reported the stop (it may end the job once all
        have: a launcher that then tears the others down must not cut their message short)."""
        if self._taken is not None and not self._acknowledged:
            self._acknowledged = True
            self.store.add(self.prefix + "acknowledged", 1)

    def start_watching(self) -> "FailureChannel":
        if self.store is not None and self.on_stuck is not None:
            threading.Thread(target=self._watch, name="mlla-rtdetr-failure-watcher", daemon=True).start()
        return self

    def stop_watching(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            announcement = self.announcement()
            if announcement is None:
                continue
            if self._stop.wait(self.grace_s):
                return  # the main thread took it up (its collective failed) or training ended
            if self._take(announcement):
                self.on_stuck(announcement)
            return


def _default_store():
    # Private but present since torch 1.x; the launcher's store is the one channel the ranks share
    # outside the collectives.
    get = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return get() if get is not None else None
    except (RuntimeError, ValueError):
        return None


def _leave_process_group(backend: Optional[str]) -> None:
    if not dist.is_initialized():
        return
    if backend == "nccl":
        dist.distributed_c10d._abort_process_group()  # pending NCCL work cannot finish: abort it
    else:
        dist.destroy_process_group()
