"""Starting the training processes: spawn them (detectron2's launcher) or join a group that an
external launcher already set up (torchrun, Slurm via submitit).

``launch`` has the signature of :func:`detectron2.engine.launch`. When the torchrun environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are all set,
this process *is* one of the workers: it initialises the process group from them (``env://``)
and runs ``main_func`` directly instead of spawning ``num_gpus_per_machine`` children.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

logger = logging.getLogger(__name__)


def torchrun_env(environ: Optional[Dict[str, str]] = None) -> Optional[Dict[str, Any]]:
    """The torchrun-style distributed settings of this process, or None if they are not all set.

    Returns a dict with ``rank``, ``world_size``, ``local_rank``, ``local_world_size``,
    ``master_addr``, ``master_port``. ``LOCAL_WORLD_SIZE`` defaults to the number of processes
    per node implied by a uniform layout (``WORLD_SIZE`` // ``NNODES`` if ``NNODES`` is set, else
    ``WORLD_SIZE``).

    Raises:
        ValueError: if only some of the variables are set, or they are inconsistent.
    """
    environ = os.environ if environ is None else environ
    present = [v for v in TORCHRUN_VARS if environ.get(v, "") != ""]
    if not present:
        return None
    if len(present) != len(TORCHRUN_VARS):
        missing = [v for v in TORCHRUN_VARS if v not in present]
        raise ValueError(
            f"Incomplete distributed environment: {present} are set but {missing} are not. "
            "Set all of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun does), "
            "or none to let train_net spawn its own processes."
        )
    try:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local_rank = int(environ["LOCAL_RANK"])
        int(environ["MASTER_PORT"])
    except ValueError as e:
        raise ValueError(f"Distributed environment variables must be integers: {e}") from e
    if "LOCAL_WORLD_SIZE" in environ:
        local_world = int(environ["LOCAL_WORLD_SIZE"])
    elif "NNODES" in environ:
        local_world = world // int(environ["NNODES"])
    else:
        local_world = world
    if not (0 <= rank < world) or not (0 <= local_rank < local_world) or world % local_world:
        raise ValueError(
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


def init_from_env(env: Dict[str, Any], timeout: timedelta, backend: str = "auto") -> None:
    """Join the process group described by :func:`torchrun_env`, create detectron2's local (per
    machine) group and pin this process's GPU.

    ``backend="auto"``: NCCL when CUDA is available, else gloo.
    """
    from detectron2.utils import comm

    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env["local_rank"])
    else:
        # the machine's processes share its cores: avoid oversubscribing intra-op threads
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // env["local_world_size"]))
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{env['master_addr']}:{env['master_port']}",
            world_size=env["world_size"],
            rank=env["rank"],
            timeout=timeout,
        )
    if comm._LOCAL_PROCESS_GROUP is None:
        comm.create_local_process_group(env["local_world_size"])
    comm.synchronize()


def _spawn_launcher():
    """The project's spawning launcher (mlla_rtdetr.engine.launch, CPU/gloo aware) if present,
    else detectron2's."""
    try:
        from mlla_rtdetr.engine.launch import launch as engine_launch

        return engine_launch, True
    except ImportError:
        from detectron2.engine.launch import launch as d2_launch

        return d2_launch, False


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
    backend: str = "auto",
    timeout: Optional[timedelta] = None,
):
    """``launch`` of ``mlla_rtdetr.engine.launch`` / detectron2 that also joins an existing
    torchrun/Slurm process group (see module docstring).

    Args:
        main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout: as
            in :func:`detectron2.engine.launch`; the process counts are ignored (with a warning if
            they disagree) when the torchrun variables are set.
        backend: "auto" (nccl with CUDA, else gloo), "nccl" or "gloo".
    """
    timeout = timedelta(minutes=30) if timeout is None else timeout
    env = torchrun_env()
    if env is not None:
        requested = num_gpus_per_machine * num_machines
        if requested not in (1, env["world_size"]):
            logger.warning(
                f"--num-gpus {num_gpus_per_machine} --num-machines {num_machines} ignored: "
                f"joining the external process group of WORLD_SIZE={env['world_size']}."
            )
        init_from_env(env, timeout, backend)
        try:
            return main_func(*args)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    if num_gpus_per_machine * num_machines <= 1:
        return main_func(*args)
    spawn, is_engine = _spawn_launcher()
    kwargs = dict(num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url,
                  args=tuple(args), timeout=timeout)
    if is_engine:
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        kwargs["backend"] = backend
    return spawn(main_func, num_gpus_per_machine, **kwargs)
