"""Running the runs of a sweep: one after another, in parallel processes, or as Slurm jobs.

Every run is ``tools/train_net.py --config-file <cfg> --resume [--num-gpus N] train.output_dir=<dir>
<overrides>``; ``--resume`` continues an interrupted run from its last checkpoint (or starts it
fresh). Locally, the process output goes to ``<run_dir>/stdout.log`` and the outcome to
``<run_dir>/sweep_run.json``; on Slurm the job itself records its status there.
"""
from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ConfigError
from .plan import RunSpec
from .records import FAILED, FINISHED, RUNNING, update_record

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
TRAIN_NET = REPO_ROOT / "tools" / "train_net.py"
STDOUT_LOG = "stdout.log"


def path_override(key: str, path) -> str:
    """``key='<path>'``: quoted, because run directory names contain ``=`` and ``,`` which the
    override grammar would otherwise read as a sweep."""
    text = str(path)
    if "'" not in text:
        return f"{key}='{text}'"
    if '"' not in text:
        return f'{key}="{text}"'
    raise ConfigError(f"Path {text!r} contains both quote characters; choose another output directory.")


def train_argv(run: RunSpec, num_gpus: Optional[int] = None, extra_args: Sequence[str] = ()) -> List[str]:
    """train_net arguments of a run (without the interpreter and script)."""
    argv = ["--config-file", str(run.config_file), "--resume"]
    if num_gpus is not None:
        argv += ["--num-gpus", str(num_gpus)]
        if num_gpus > 1:  # parallel multi-process runs must not share the default port
            argv += ["--dist-url", "auto"]
    argv += list(extra_args)
    argv += list(run.overrides) + [path_override("train.output_dir", run.output_dir)]
    return argv


def train_command(
    run: RunSpec,
    num_gpus: Optional[int] = None,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    script: Path = TRAIN_NET,
) -> List[str]:
    return [python, str(script)] + train_argv(run, num_gpus, extra_args)


def _record_fields(run: RunSpec, sweep_name: Optional[str]) -> Dict[str, object]:
    fields = dict(run.to_dict())
    if sweep_name:
        fields["sweep"] = sweep_name
    return fields


def _slot_envs(jobs: int, devices: Optional[Sequence[str]], gpus_per_run: int) -> List[Dict[str, str]]:
    """Environment of each parallel slot: its own GPUs, and CPU threads split between slots."""
    envs = []
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    for slot in range(jobs):
        env: Dict[str, str] = {}
        if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(threads)
        if devices:
            chunk = list(devices[slot * gpus_per_run:(slot + 1) * gpus_per_run])
            if len(chunk) < gpus_per_run:
                raise ConfigError(
                    f"--devices {','.join(devices)} is too short for {jobs} parallel runs of "
                    f"{gpus_per_run} GPU(s) each."
                )
            env["CUDA_VISIBLE_DEVICES"] = ",".join(chunk)
        envs.append(env)
    return envs


def run_local(
    runs: Sequence[RunSpec],
    commands: Sequence[Sequence[str]],
    jobs: int = 1,
    devices: Optional[Sequence[str]] = None,
    gpus_per_run: int = 1,
    sweep_name: Optional[str] = None,
    echo: Callable[[str], None] = print,
    poll_s: float = 0.5,
) -> Dict[str, int]:
    """Run commands on this machine, ``jobs`` at a time; returns run name -> return code.

    A failed run does not stop the others. Ctrl-C terminates the running ones (their records
    say ``failed``; the next sweep resumes them from their last checkpoint).
    """
    if jobs < 1:
        raise ConfigError("--jobs must be >= 1.")
    envs = _slot_envs(jobs, devices, gpus_per_run)
    pending = list(zip(runs, commands))
    active: Dict[int, tuple] = {}  # slot -> (run, process, log file, start time)
    codes: Dict[str, int] = {}
    total = len(pending)
    done = 0

    def start(slot: int, run: RunSpec, command: Sequence[str]):
        run.output_dir.mkdir(parents=True, exist_ok=True)
        update_record(run.output_dir, **_record_fields(run, sweep_name), status=RUNNING,
                      command=list(command), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        log = open(run.output_dir / STDOUT_LOG, "ab")
        env = dict(os.environ)
        env.update(envs[slot])
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(REPO_ROOT))
        echo(f"[sweep] started  {run.name} (pid {proc.pid}; log {run.output_dir / STDOUT_LOG})")
        active[slot] = (run, proc, log, time.time())

    def finish(slot: int, rc: int):
        nonlocal done
        run, proc, log, t0 = active.pop(slot)
        log.close()
        done += 1
        duration = time.time() - t0
        status = FINISHED if rc == 0 else FAILED
        update_record(run.output_dir, status=status, returncode=rc, duration_s=round(duration, 1),
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        codes[run.name] = rc
        tail = "" if rc == 0 else f" -- see {run.output_dir / STDOUT_LOG}"
        echo(f"[sweep] {status:8s} {run.name} (rc={rc}, {duration:.0f}s) [{done}/{total}]{tail}")

    try:
        while pending or active:
            for slot in range(jobs):
                if slot not in active and pending:
                    start(slot, *pending.pop(0))
            for slot in list(active):
                rc = active[slot][1].poll()
                if rc is not None:
                    finish(slot, rc)
            if active:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for slot in list(active):
            proc = active[slot][1]
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            finish(slot, proc.returncode if proc.returncode is not None else -2)
        raise
    return codes


def submit_slurm(
    runs: Sequence[RunSpec],
    argvs: Sequence[Sequence[str]],
    executor,
    sweep_name: Optional[str] = None,
    echo: Callable[[str], None] = print,
    script: Optional[str] = None,
) -> Dict[str, object]:
    """Submit one job per run (as one Slurm job array); returns run name -> submitit job.

    Each job runs :class:`mlla_rtdetr.launch.job.TrainJob` (``script``, default
    tools/train_net.py), which checkpoints and requeues itself on preemption and records its
    status in the run directory.
    """
    from mlla_rtdetr.launch.job import TrainJob

    jobs_fns = []
    for run, argv in zip(runs, argvs):
        run.output_dir.mkdir(parents=True, exist_ok=True)
        on_status = functools.partial(update_record, str(run.output_dir), **_record_fields(run, sweep_name))
        jobs_fns.append(TrainJob(argv, script=script, on_status=on_status))
    submitted = []
    with executor.batch():
        for fn in jobs_fns:
            submitted.append(executor.submit(fn))
    ids = {}
    for run, job in zip(runs, submitted):
        ids[run.name] = job
        update_record(run.output_dir, **_record_fields(run, sweep_name), status="submitted",
                      job_id=job.job_id)
        echo(f"[sweep] submitted {run.name} as job {job.job_id}")
    return ids
