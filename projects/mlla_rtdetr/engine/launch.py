"""Multi-process launch for CPU (gloo) and CUDA (nccl), and the train_net argument parser.

detectron2's ``launch`` picks NCCL whenever CUDA is present and wraps models with
``device_ids=[local_rank]``; here the backend follows the training device, so
``--num-gpus 2`` with ``train.device=cpu`` runs two gloo processes on the CPU.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
from datetime import timedelta
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import default_argument_parser as d2_argument_parser
from detectron2.utils import comm

__all__ = ["default_argument_parser", "launch", "dist_backend_for", "resolve_device", "create_ddp_model"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's parser (--config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url, then ``key=value`` overrides as ``opts``)."""
    epilog = epilog or (
        "Examples:\n"
        "  train_net.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py "
        "train.max_iter=100 train.output_dir=out\n"
        "  train_net.py --config-file cfg.py --num-gpus 2 train.device=cpu   # 2 gloo processes\n"
        "  train_net.py --config-file cfg.py --eval-only train.init_checkpoint=out/model_final.pth\n"
    )
    parser = d2_argument_parser(epilog=epilog)
    parser.add_argument(
        "--dist-backend", default="auto", choices=["auto", "nccl", "gloo"],
        help="torch.distributed backend; auto = nccl when training on CUDA, else gloo",
    )
    return parser


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; validates explicit cuda requests."""
    device = str(device or "auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={device!r} but CUDA is not available; use train.device=cpu or auto.")
    return dev


def dist_backend_for(device: torch.device, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "nccl" if device.type == "cuda" else "gloo"


def _find_free_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
    backend: str = "gloo",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on this machine.

    ``num_gpus_per_machine`` is the number of processes (GPUs for nccl, CPU workers for gloo).
    With one process in total, ``main_func`` runs in the calling process.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"--num-gpus {num_gpus_per_machine} with nccl, but only {torch.cuda.device_count()} CUDA "
            "devices are visible. Use train.device=cpu (gloo) or fewer processes."
        )
    if dist_url in (None, "auto"):
        if num_machines > 1:
            raise ValueError("--dist-url must be given (tcp://HOST:PORT) for multi-machine jobs.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, backend, timeout),
        daemon=False,
    )


def _distributed_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url,
                        args, backend, timeout):
    global_rank = machine_rank * num_per_machine + local_rank
    if backend == "gloo":
        # N CPU workers share the cores: avoid N x oversubscription of intra-op threads.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
    try:
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=timeout)
    except Exception:
        logging.getLogger(__name__).error(f"Process group URL: {dist_url}")
        raise
    comm.create_local_process_group(num_per_machine)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


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
