"""The training device of a process and DistributedDataParallel wrapping on CPU or CUDA."""
from __future__ import annotations

import torch
from detectron2.utils import comm

from ..errors import ConfigError

__all__ = ["resolve_device", "device_for_process", "create_ddp_model"]


def resolve_device(device: str) -> torch.device:
    """``train.device``: ``"auto"`` -> cuda when available, else cpu; an explicit cuda request
    without CUDA is a :class:`ConfigError`."""
    device = str(device or "auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"train.device={device!r} is not a device: {e}. Use cpu, cuda, cuda:N or auto.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device!r} but CUDA is not available; use train.device=cpu or auto.")
    return dev


def device_for_process(device: str) -> torch.device:
    """The device this process trains on: ``train.device``, and for CUDA without an index the GPU
    of this process's local rank."""
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", comm.get_local_rank() if comm.get_world_size() > 1 else 0)
    return dev


def create_ddp_model(model: torch.nn.Module, *, fp16_compression: bool = False, **kwargs) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when world size > 1 (CPU: ``device_ids=None``)."""
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index if device.index is not None else comm.get_local_rank()])
    else:
        kwargs["device_ids"] = None
    ddp = torch.nn.parallel.DistributedDataParallel(model, **kwargs)
    if fp16_compression and device.type == "cuda":
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
