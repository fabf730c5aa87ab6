"""Building submitit executors (Slurm or local) from command-line style options."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import submitit

from ..errors import ConfigError, UserError


def parse_time(text: str) -> int:
    """Slurm time limit -> minutes. Accepts ``MM``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``, ``90m``, ``4h``."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([mhd]?)", text)
    if m:
        value = float(m.group(1))
        minutes = value * {"": 1, "m": 1, "h": 60, "d": 1440}[m.group(2)]
        return max(1, int(round(minutes)))
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ConfigError(
            f"Cannot read time limit '{text}': use minutes ('240'), 'HH:MM:SS', 'D-HH:MM' or '4h'."
        )
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = a, b or 0, c or 0
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = a, b, c
    else:  # MM:SS
        hours, minutes, seconds = 0, a, b or 0
    total = (days or 0) * 1440 + hours * 60 + minutes + seconds / 60
    return max(1, int(-(-total // 1)))


def parse_sbatch_options(items: Sequence[str]) -> Dict[str, str]:
    """``["mail-type=END", "--exclusive", "qos=high"]`` -> sbatch ``additional_parameters``."""
    out: Dict[str, object] = {}
    for item in items:
        text = item.strip()
        if text.startswith("#SBATCH"):
            text = text[len("#SBATCH"):].strip()
        text = text.lstrip("-")
        key, sep, value = text.partition("=")
        key = key.strip().replace("_", "-")
        if not key or not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise ConfigError(f"Bad sbatch option '{item}': expected NAME=VALUE or NAME (e.g. qos=high).")
        out[key] = value.strip() if sep else True
    return out


@dataclass
class ClusterOptions:
    """Where and how to run: Slurm resources or the local submitit executor."""

    folder: Path
    nodes: int = 1
    gpus_per_node: int = 1
    partition: Optional[str] = None
    time_min: int = 60
    account: Optional[str] = None
    job_name: str = "mlla_rtdetr"
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[int] = None
    signal_delay_s: int = 120
    max_requeues: int = 10
    sbatch: Dict[str, object] = field(default_factory=dict)
    setup: List[str] = field(default_factory=list)
    local: bool = False
    array_parallelism: Optional[int] = None


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The Slurm/local options shared by tools/submit.py and tools/sweep.py."""
    g = parser.add_argument_group("cluster (Slurm via submitit)")
    g.add_argument("--nodes", type=int, default=1, help="number of machines")
    g.add_argument("--gpus-per-node", type=int, default=1,
                   help="GPUs (= training processes) per machine; 0 -> one CPU process")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--time", default="60", help="time limit: minutes, HH:MM:SS, D-HH:MM or '4h'")
    g.add_argument("--account", default=None, help="Slurm account to charge")
    g.add_argument("--job-name", default="mlla_rtdetr")
    g.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per process")
    g.add_argument("--mem-gb", type=int, default=None, help="memory per node (GB)")
    g.add_argument("--signal-delay-s", type=int, default=120,
                   help="seconds between the preemption/time-out signal and the kill")
    g.add_argument("--max-requeues", type=int, default=10,
                   help="how many times a timed-out job may requeue itself")
    g.add_argument("--sbatch", action="append", default=[], metavar="NAME=VALUE",
                   help="extra sbatch option, repeatable (e.g. --sbatch qos=high --sbatch exclusive)")
    g.add_argument("--setup", action="append", default=[], metavar="CMD",
                   help="shell line run before the job starts (e.g. 'module load cuda')")
    g.add_argument("--local", action="store_true",
                   help="run through submitit's local executor (no Slurm; single machine)")
    g.add_argument("--submitit-dir", default=None,
                   help="folder for submitit's pickles and logs (default: <output>/submitit)")


def options_from_args(args: argparse.Namespace, default_folder: Path) -> ClusterOptions:
    if args.nodes < 1:
        raise ConfigError("--nodes must be >= 1.")
    if args.gpus_per_node < 0:
        raise ConfigError("--gpus-per-node must be >= 0.")
    if args.local and args.nodes != 1:
        raise ConfigError("--local runs on this machine only: use --nodes 1.")
    return ClusterOptions(
        folder=Path(args.submitit_dir) if args.submitit_dir else Path(default_folder),
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time_min=parse_time(args.time),
        account=args.account,
        job_name=args.job_name,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        signal_delay_s=args.signal_delay_s,
        max_requeues=args.max_requeues,
        sbatch=parse_sbatch_options(args.sbatch),
        setup=list(args.setup),
        local=args.local,
    )


def tasks_per_node(opts: ClusterOptions) -> int:
    """One training process per GPU; one process on CPU-only nodes."""
    return max(1, opts.gpus_per_node)


def slurm_parameters(opts: ClusterOptions) -> Dict[str, object]:
    """``SlurmExecutor.update_parameters`` keywords: one task per GPU on each node."""
    params: Dict[str, object] = dict(
        job_name=opts.job_name,
        time=opts.time_min,
        nodes=opts.nodes,
        ntasks_per_node=tasks_per_node(opts),
        signal_delay_s=opts.signal_delay_s,
        stderr_to_stdout=False,
    )
    if opts.gpus_per_node > 0:
        params["gpus_per_node"] = opts.gpus_per_node
    for key, value in (("partition", opts.partition), ("account", opts.account),
                       ("cpus_per_task", opts.cpus_per_task)):
        if value is not None:
            params[key] = value
    if opts.mem_gb is not None:
        params["mem"] = f"{opts.mem_gb}GB"
    if opts.setup:
        params["setup"] = list(opts.setup)
    if opts.sbatch:
        params["additional_parameters"] = dict(opts.sbatch)
    if opts.array_parallelism:
        params["array_parallelism"] = opts.array_parallelism
    return params


def make_executor(opts: ClusterOptions) -> submitit.Executor:
    """A submitit executor with one task per GPU on each node.

    Slurm: ``--nodes``, ``--ntasks-per-node``, ``--gpus-per-node``, ``--signal=USR2@<delay>`` (the
    preemption/time-out warning that triggers checkpoint + requeue), ``--open-mode=append``.
    """
    folder = Path(opts.folder)
    if opts.local:
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=opts.max_requeues)
        params = dict(
            timeout_min=opts.time_min,
            tasks_per_node=tasks_per_node(opts),
            gpus_per_node=opts.gpus_per_node,
            nodes=1,
            signal_delay_s=opts.signal_delay_s,
        )
        if opts.setup:
            params["setup"] = list(opts.setup)
        executor.update_parameters(**params)
        return executor
    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_requeues)
    except RuntimeError as e:
        raise UserError(
            f"{e} Submit from a Slurm login node, or use --local to run here "
            "(--dry-run prints the sbatch script anywhere)."
        ) from e
    executor.update_parameters(**slurm_parameters(opts))
    return executor


def sbatch_script(opts: ClusterOptions, python: str = None) -> str:
    """The sbatch file a Slurm submission would use (works without Slurm: for --dry-run/tests)."""
    import shlex
    import sys

    from submitit.slurm.slurm import _make_sbatch_string

    if opts.local:
        return "(local executor: no sbatch script)"
    python = python or shlex.quote(sys.executable)
    command = f"{python} -u -m submitit.core._submit {shlex.quote(str(opts.folder))}"
    return _make_sbatch_string(command=command, folder=str(opts.folder), **slurm_parameters(opts))
