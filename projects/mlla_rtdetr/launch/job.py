"""A training/evaluation run of tools/train_net.py as a submitit job that requeues itself.

Each submitit task is one training process (one GPU): the job reads its rank from the Slurm (or
submitit-local) environment, exports the torchrun variables and runs train_net's ``main(args)``
in-process through :func:`mlla_rtdetr.launch.launch_from_args`, which joins that process group.
On preemption/time-out the trainer's :class:`~mlla_rtdetr.engine.PreemptionHook` saves the
current iteration and hands over to submitit, which calls :meth:`TrainJob.checkpoint` to get the
resubmission (the same run with ``--resume``) and requeues it.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import submitit
from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

from ..engine.preemption import PREEMPTED_EXIT_CODE, stop_requested
from .distributed import launch_from_args

REPO_ROOT = Path(__file__).resolve().parents[3]
TRAIN_NET = REPO_ROOT / "tools" / "train_net.py"


def load_script(path: Path):
    """Import a tools/ script as a module without running its ``__main__`` block."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Training script '{path}' does not exist.")
    name = "_mlla_rtdetr_" + path.stem
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def parse_train_args(module, argv: Sequence[str]):
    """Parse ``argv`` with the script's argument parser (train_net's ``default_argument_parser``)."""
    return module.default_argument_parser().parse_args(list(argv))


def with_resume(argv: Sequence[str]) -> List[str]:
    """``argv`` with ``--resume`` (idempotent). It goes first: flags must precede the config
    overrides, which argparse collects as REMAINDER."""
    argv = list(argv)
    return argv if "--resume" in argv else ["--resume"] + argv


class TrainJob(submitit.helpers.Checkpointable):
    """Callable submitted to submitit: ``tools/train_net.py argv`` in every task.

    Args:
        argv: train_net arguments (``--config-file X [--eval-only] key=value ...``);
            ``--num-gpus``/``--num-machines`` are taken from the job's task layout.
        script: the training script (tools/train_net.py).
        on_status: if given, rank 0 calls ``on_status(**fields)`` when the run starts (status
            "running", job id, attempt, host, argv) and ends (status "finished" | "requeued" |
            "failed", return code or error), e.g. to keep a run record next to the run's output.
            It is pickled with the job: a module-level function or a ``functools.partial`` of one.
    """

    def __init__(
        self,
        argv: Sequence[str],
        script: Optional[str] = None,
        on_status: Optional[Callable[..., object]] = None,
    ):
        self.argv = list(argv)
        self.script = str(script or TRAIN_NET)
        self.on_status = on_status
        self.attempt = 0

    def _report(self, rank: int, **fields):
        if self.on_status is not None and rank == 0:
            self.on_status(**fields)

    def __call__(self):
        job_env = submitit.JobEnvironment()
        dist_env = submitit.helpers.TorchDistributedEnvironment()
        # Tasks of one node see all of its GPUs; train_net selects cuda:LOCAL_RANK.
        dist_env.export(set_cuda_visible_devices=False, overwrite=True)
        if dist_env.world_size == 1:
            # a single process needs no process group: run like a plain `train_net.py` call
            for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
                os.environ.pop(var, None)
        rank = dist_env.rank
        self._report(
            rank,
            status="running",
            job_id=job_env.job_id,
            attempt=self.attempt,
            host=socket.gethostname(),
            argv=self.argv,
            started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        module = load_script(Path(self.script))
        args = parse_train_args(module, self.argv)
        args.num_gpus = dist_env.local_world_size
        args.num_machines = dist_env.world_size // dist_env.local_world_size
        args.machine_rank = job_env.node
        try:
            result = launch_from_args(module.main, args)
        except SystemExit as e:
            if e.code not in (0, None):
                self._report(rank, status="requeued" if _requeued(e) else "failed", returncode=e.code)
            raise
        except BaseException as e:
            self._report(rank, status="failed", error=f"{type(e).__name__}: {e}")
            raise
        self._report(rank, status="finished", returncode=0,
                            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        return _plain(result)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption/time-out (after PreemptionHook saved the iteration):
        resubmit the same run with ``--resume``."""
        job = TrainJob(with_resume(self.argv), script=self.script, on_status=self.on_status)
        job.attempt = self.attempt + 1
        return submitit.helpers.DelayedSubmission(job)


def _requeued(e: SystemExit) -> bool:
    """The job stopped to be requeued (preemption/time-out), not because it failed."""
    return stop_requested() is not None or e.code in (LOCAL_REQUEUE_RETURN_CODE, PREEMPTED_EXIT_CODE, -1)


def _plain(result):
    """Keep the job's pickled result small and free of tensors/config objects."""
    if not isinstance(result, dict):
        return None
    from detectron2.evaluation.testing import flatten_results_dict

    return {k: float(v) for k, v in flatten_results_dict(result).items() if isinstance(v, (int, float))}
