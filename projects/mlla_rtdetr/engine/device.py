"""The training device of a process and DistributedDataParallel wrapping (with SyncBN) on CPU or CUDA."""
from __future__ import annotations

import logging

import torch
from detectron2.utils import comm

from ..errors import ConfigError
from ..modeling.layers import convert_sync_batch_norm

logger = logging.getLogger(__name__)

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
    of this process's local rank. An explicit GPU index (``cuda:1``) is for a single process: with
    several, each uses the GPU of its local rank and the index is a :class:`ConfigError`."""
    dev = resolve_device(device)
    world = comm.get_world_size()
    if dev.type == "cuda" and dev.index is not None and world > 1:
        raise ConfigError(
            f"train.device={device!r} names one GPU, but this job has {world} processes and each uses "
            "the GPU of its local rank. Set train.device=cuda (or auto) and choose the GPUs with "
            "CUDA_VISIBLE_DEVICES (e.g. CUDA_VISIBLE_DEVICES=2,3 ... --num-gpus 2)."
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", comm.get_local_rank() if world > 1 else 0)
    return dev


def create_ddp_model(model: torch.nn.Module, *, sync_bn: bool = True, fp16_compression: bool = False,
                     **kwargs) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when world size > 1 (CPU: ``device_ids=None``).

    Args:
        sync_bn: first make every ``BatchNorm2d`` of ``model`` (in place) normalise with the
            statistics of all processes (:func:`~mlla_rtdetr.modeling.layers.convert_sync_batch_norm`:
            torch's ``SyncBatchNorm`` on CUDA, :class:`~mlla_rtdetr.modeling.layers.SyncBatchNorm2d`
            elsewhere), as the official RT-DETR does (``sync_bn: True``); FrozenBatchNorm2d stays frozen.
        fp16_compression: fp16 gradient all-reduce (CUDA).
        kwargs: DistributedDataParallel options (``broadcast_buffers``, ``find_unused_parameters`` ...).
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if sync_bn:
        n = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        if convert_sync_batch_norm(model, device.type) is not model:
            raise ValueError("create_ddp_model: the model itself is a BatchNorm; wrap it in a module first.")
        logger.info(f"SyncBN: {n} BatchNorm2d layers normalise over all {comm.get_world_size()} processes")
    if kwargs.get("broadcast_buffers") is True:
        kwargs.pop("broadcast_buffers")  # torch's default (deprecated by name in torch >= 2.14)
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index if device.index is not None else comm.get_local_rank()])
    else:
        kwargs["device_ids"] = None
    ddp = torch.nn.parallel.DistributedDataParallel(model, **kwargs)
    if fp16_compression and device.type == "cuda":
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
