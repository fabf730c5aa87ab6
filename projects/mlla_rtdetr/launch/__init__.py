"""Starting runs: processes on this machine or in a torchrun/Slurm group (:mod:`.distributed`),
and Slurm jobs through submitit that requeue themselves on preemption (:mod:`.job`,
:mod:`.slurm`).

Attributes are imported lazily so that light tools (sweep planning) do not import torch.
"""
import importlib

_EXPORTS = {
    "dist_backend_for": "distributed",
    "launch": "distributed",
    "launch_from_args": "distributed",
    "torchrun_env": "distributed",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
