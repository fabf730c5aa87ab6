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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["FAILURE_KINDS", "StepFlags", "agree_step_flags"]

FAILURE_KINDS = ("", "reading its data", "in the forward pass or the losses", "with a non-finite loss")
"""Index = failure code of a rank in :attr:`StepFlags.failures` (0: no failure)."""


@dataclass(frozen=True)
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
