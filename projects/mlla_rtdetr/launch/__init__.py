"""Process launching for multi-GPU / multi-node / Slurm runs, and preemption handling.

* :func:`launch` (:mod:`.distributed`) — the project's launcher that also joins torchrun/Slurm
  process groups.
* :class:`PreemptionHook` (:mod:`.preemption`) — checkpoint at an iteration boundary and
  requeue/stop on SIGUSR1/SIGUSR2.
* :mod:`.job` / :mod:`.slurm` — submitit jobs and executors.

Attributes are imported lazily so that light tools (sweep planning) do not import torch.
"""
import importlib

_EXPORTS = {
    "launch": "distributed",
    "torchrun_env": "distributed",
    "PreemptionHook": "preemption",
    "PREEMPTED_EXIT_CODE": "preemption",
    "install_handlers": "preemption",
    "request_stop": "preemption",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
