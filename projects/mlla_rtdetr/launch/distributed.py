"""Starting the training processes: join a process group that an external launcher already set up
(torchrun, Slurm through submitit), or spawn one process per GPU (or CPU worker) on this machine.

:func:`launch` has the signature of :func:`detectron2.engine.launch`. When the torchrun variables
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are all set, this
process *is* one of the workers: it joins that group and runs ``main_func`` itself instead of
spawning ``num_gpus_per_machine`` children. The backend follows the training device
(:func:`dist_backend_for`): ``--num-gpus 2 train.device=cpu`` runs two gloo processes, also on a
GPU machine, where detectron2's launcher would pick NCCL.
"""
from __future__ import annotations

import logging
import os
import pickle
import socket
import sys
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm

from ..engine import TRAINING_SECTIONS, load_config, prepare_data, resolve_device
from ..errors import ConfigError, TrainingStopped, UserError

__all__ = ["DEFAULT_TIMEOUT", "TORCHRUN_VARS", "dist_backend_for", "launch", "launch_from_args", "torchrun_env"]

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT = timedelta(minutes=30)
USER_ERROR_EXIT_CODE = 2

logger = logging.getLogger(__name__)


def dist_backend_for(device: torch.device, requested: str = "auto") -> str:
    """The process-group backend: ``requested`` unless "auto"; then nccl when training on CUDA,
    gloo otherwise (CPU training, also on a machine with GPUs)."""
    if requested != "auto":
        return requested
    return "nccl" if device.type == "cuda" else "gloo"


def torchrun_env(environ: Optional[Dict[str, str]] = None) -> Optional[Dict[str, Any]]:
    """The torchrun-style distributed settings of this process, or None if none are set.

    Returns a dict with ``rank``, ``world_size``, ``local_rank``, ``local_world_size``,
    ``master_addr``, ``master_port``. ``LOCAL_WORLD_SIZE`` defaults to the number of processes
    per node implied by a uniform layout (``WORLD_SIZE`` // ``NNODES`` if ``NNODES`` is set, else
    ``WORLD_SIZE``).

    Raises:
        ConfigError: if only some of the variables are set, or they are inconsistent.
    """
    environ = os.environ if environ is None else environ
    present = [v for v in TORCHRUN_VARS if environ.get(v, "") != ""]
    if not present:
        return None
    if len(present) != len(TORCHRUN_VARS):
        missing = [v for v in TORCHRUN_VARS if v not in present]
        raise ConfigError(
            f"Incomplete distributed environment: {present} are set but {missing} are not. "
            "Set all of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun does), "
            "or none to let train_net spawn its own processes."
        )
    try:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local_rank = int(environ["LOCAL_RANK"])
        int(environ["MASTER_PORT"])
    except ValueError as e:
        raise ConfigError(f"Distributed environment variables must be integers: {e}") from None
    if "LOCAL_WORLD_SIZE" in environ:
        local_world = int(environ["LOCAL_WORLD_SIZE"])
    elif "NNODES" in environ:
        local_world = world // int(environ["NNODES"])
    else:
        local_world = world
    if not (0 <= rank < world) or not (0 <= local_rank < local_world) or world % local_world:
        raise ConfigError(
            f"Inconsistent distributed environment: RANK={rank} WORLD_SIZE={world} "
            f"LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={local_world}."
        )
    return {
        "rank": rank,
        "world_size": world,
        "local_rank": local_rank,
        "local_world_size": local_world,
        "master_addr": environ["MASTER_ADDR"],
        "master_port": int(environ["MASTER_PORT"]),
    }


def _join_group(backend: str, init_method: str, world_size: int, rank: int, local_rank: int,
                local_world_size: int, timeout: timedelta) -> None:
    """Join the process group, create detectron2's per-machine group, pin this process's GPU."""
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    else:
        # the machine's processes share its cores: avoid oversubscribing intra-op threads
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size,
                                    rank=rank, timeout=timeout)
        except Exception:
            logger.error(f"Process group URL: {init_method}")
            raise
    if comm._LOCAL_PROCESS_GROUP is None:
        comm.create_local_process_group(local_world_size)
    comm.synchronize()


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _transferable(error: Exception) -> Exception:
    """``error`` if it survives pickling (to reach the launching process), else its message."""
    try:
        error = pickle.loads(pickle.dumps(error))
    except Exception:  # pickling fails with several exception types (custom constructors ...)
        return UserError(str(error)) if isinstance(error, UserError) else TrainingStopped(str(error))
    error.__cause__ = error.__context__ = None  # the cause's traceback is in the failing process's log
    return error


def _spawned_worker(local_rank, main_func, args, world_size, num_per_machine, machine_rank, dist_url,
                    backend, timeout, user_errors):
    _join_group(backend, dist_url, world_size, machine_rank * num_per_machine + local_rank, local_rank,
                num_per_machine, timeout)
    try:
        main_func(*args)
    except (UserError, TrainingStopped) as e:
        # The launching process raises it again: one message, without the processes' tracebacks.
        # A training step's failure is raised on every rank with the same message.
        user_errors.put(_transferable(e))
        sys.exit(USER_ERROR_EXIT_CODE if isinstance(e, UserError) else 1)
    dist.destroy_process_group()  # after success only: the other processes may still be in a collective


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
    backend: str = "auto",
    timeout: timedelta = DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` in every process of the job.

    Args:
        main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout: as in
            :func:`detectron2.engine.launch`. ``num_gpus_per_machine`` is the number of processes
            per machine (GPUs for nccl, CPU workers for gloo); ``dist_url`` None or "auto" picks a
            free local port (single machine only). The process counts are ignored (with a warning
            if they disagree) when the torchrun variables are set.
        backend: "nccl", "gloo", or "auto": :func:`dist_backend_for` the default device
            (``train.device=auto``); :func:`launch_from_args` passes the config's.

    Returns ``main_func``'s result in the processes that run it themselves (a single process, or
    one that joined a torchrun group); None after spawning. A :class:`UserError` or
    :class:`TrainingStopped` raised in a spawned process is raised again here.
    """
    backend = dist_backend_for(resolve_device("auto"), backend)
    env = torchrun_env()
    if env is not None:
        requested = num_gpus_per_machine * num_machines
        if requested not in (1, env["world_size"]):
            logger.warning(
                f"--num-gpus {num_gpus_per_machine} --num-machines {num_machines} ignored: "
                f"joining the external process group of WORLD_SIZE={env['world_size']}."
            )
        _join_group(backend, f"tcp://{env['master_addr']}:{env['master_port']}", env["world_size"], env["rank"],
                    env["local_rank"], env["local_world_size"], timeout)
        result = main_func(*args)
        dist.destroy_process_group()
        return result
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if backend == "nccl" and num_gpus_per_machine > torch.cuda.device_count():
        raise ConfigError(
            f"--num-gpus {num_gpus_per_machine} with nccl, but only {torch.cuda.device_count()} CUDA "
            "devices are visible. Use train.device=cpu (gloo) or fewer processes."
        )
    if dist_url in (None, "auto"):
        if num_machines > 1:
            raise ConfigError("--dist-url must be given (tcp://HOST:PORT) for multi-machine jobs.")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    user_errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.start_processes(
            _spawned_worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, tuple(args), world_size, num_gpus_per_machine, machine_rank, dist_url, backend,
                  timeout, user_errors),
            daemon=False,
            start_method="spawn",
        )
    except (mp.ProcessExitedException, mp.ProcessRaisedException):
        if not user_errors.empty():  # the cause; other processes may have failed because of it
            raise user_errors.get() from None
        raise
    return None


def launch_from_args(main_func: Callable, args):
    """Launch ``main_func(args)`` with train_net's arguments (``--num-gpus``, ``--num-machines``,
    ``--machine-rank``, ``--dist-url``, ``--dist-backend``, or a torchrun group).

    The config is loaded and its datasets are checked here first, before any process starts or
    anything is written, so a mistake in it, in an override or in the data is reported once; the
    backend follows its ``train.device``. Processes of a torchrun group do both in ``main_func``.
    """
    env = torchrun_env()
    world_size = env["world_size"] if env is not None else args.num_gpus * args.num_machines
    backend = "auto"
    if env is None or world_size > 1:
        cfg = load_config(args.config_file, args.opts, require=TRAINING_SECTIONS)
        if env is None:
            # A data mistake ends here, once, before any process starts or anything is written;
            # a single process keeps the loaded datasets for its loaders.
            prepare_data(cfg, splits=("test",) if args.eval_only else ("train", "test"), keep_loaded=world_size == 1)
        backend = dist_backend_for(resolve_device(cfg.train.device), args.dist_backend)
    return launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        backend=backend,
    )
