#!/usr/bin/env python
"""Submit a training or evaluation run of tools/train_net.py to Slurm (via submitit).

    # 2 nodes x 8 GPUs, 24 h, requeued (and resumed exactly) on preemption or time-out
    tools/submit.py --config-file projects/mlla_rtdetr/configs/<recipe>.py \\
        --nodes 2 --gpus-per-node 8 --partition gpu --time 24:00:00 --account myproj \\
        --sbatch qos=high --sbatch constraint=a100 train.output_dir=output/r18_mlla

    # evaluation only
    tools/submit.py --config-file ... --eval-only train.init_checkpoint=... train.output_dir=...

    # no Slurm: the same job through submitit's local executor (one process per --gpus-per-node)
    tools/submit.py --local --gpus-per-node 0 --config-file ... train.output_dir=output/local

One Slurm task per GPU; each joins the job's process group. Slurm sends USR2 ``--signal-delay-s``
seconds before preemption or the time limit: the trainer finishes the current iteration, saves a
checkpoint and the job requeues itself with ``--resume``. ``--dry-run`` prints the sbatch script.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from mlla_rtdetr.config import config_path
from mlla_rtdetr.errors import ConfigError, run_main
from mlla_rtdetr.launch.slurm import add_cluster_arguments, make_executor, options_from_args, sbatch_script


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--eval-only", action="store_true", help="evaluate instead of training")
    parser.add_argument("--resume", action="store_true",
                        help="resume from the output directory's last checkpoint (requeues always do)")
    parser.add_argument("--wait", action="store_true",
                        help="block until the job ends; print its result; exit 1 if it failed")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the job (and sbatch script) without submitting")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. train.output_dir=output/x train.max_iter=1000")
    add_cluster_arguments(parser)
    return parser


def output_dir_of(config_file: str, overrides) -> Path:
    """``train.output_dir`` of the run: from the overrides, else from the config."""
    for o in overrides:
        if o.startswith("train.output_dir="):
            return Path(o.split("=", 1)[1].strip("'\""))
    from omegaconf import OmegaConf

    from mlla_rtdetr.engine import load_config

    output_dir = OmegaConf.select(load_config(config_file), "train.output_dir", default=None)
    if not output_dir:
        raise ConfigError(f"{config_file} has no train.output_dir: pass train.output_dir=... as an override.")
    return Path(output_dir)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config_file = str(config_path(args.config_file))
    out = output_dir_of(config_file, args.overrides)
    cluster = options_from_args(args, default_folder=out / "submitit")

    from mlla_rtdetr.launch.job import TrainJob
    from mlla_rtdetr.sweep.records import update_record

    train_argv = ["--config-file", config_file]
    if args.eval_only:
        train_argv.append("--eval-only")
    if args.resume:
        train_argv.append("--resume")
    train_argv += list(args.overrides)
    if not any(o.startswith("train.output_dir=") for o in args.overrides):
        from mlla_rtdetr.sweep.backends import path_override

        train_argv.append(path_override("train.output_dir", out))

    where = "local executor" if cluster.local else (
        f"Slurm: {cluster.nodes} node(s) x {max(1, cluster.gpus_per_node)} task(s), "
        f"{cluster.gpus_per_node} GPU(s)/node, {cluster.time_min} min"
    )
    print(f"Job: tools/train_net.py {' '.join(train_argv)}\n  on {where}; output {out}; "
          f"submitit folder {cluster.folder}")
    if args.dry_run:
        print(sbatch_script(cluster))
        return 0
    executor = make_executor(cluster)
    on_status = functools.partial(update_record, str(out), config_file=args.config_file,
                                  overrides=list(args.overrides))
    job = executor.submit(TrainJob(train_argv, on_status=on_status))
    print(f"Submitted job {job.job_id}; logs: {job.paths.stdout}")
    if not args.wait:
        return 0
    try:
        result = job.result()
    except Exception as e:
        print(f"Job {job.job_id} failed: {e}", file=sys.stderr)
        return 1
    print(f"Job {job.job_id} finished: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
