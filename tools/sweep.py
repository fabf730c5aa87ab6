#!/usr/bin/env python
"""Run a grid (or a list) of config overrides over one or more base configs.

Examples::

    # 2 attentions x 3 seeds = 6 runs, one after another
    tools/sweep.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py \\
        --set model.encoder.attention=softmax,mlla --set train.seed=0,1,2 \\
        --output-dir output/sweeps/attention train.max_iter=500

    # the same, 2 runs at a time, each on its own GPU
    tools/sweep.py ... --jobs 2 --devices 0,1

    # on Slurm: one job per run (a job array), each 1 node x 8 GPUs, requeued on preemption
    tools/sweep.py ... --backend slurm --nodes 1 --gpus-per-node 8 --partition gpu --time 24:00:00

    # an explicit list instead of a grid (one run per line in runs.txt)
    tools/sweep.py --config-file A.py --runs-file runs.txt --output-dir output/sweeps/ablation

    # a list of labelled runs ("placement=fusion | model.encoder.fpn_fusion=mlla ...") x 3 seeds
    tools/sweep.py --config-file projects/mlla_rtdetr/configs/placement_study_synthetic.py \
        --runs-file projects/mlla_rtdetr/sweeps/placements.txt --set train.seed=0,1,2

Each run writes to ``<output-dir>/<name>`` where the name lists its swept values
(``attention=mlla,seed=1``). Runs whose ``sweep_run.json`` says ``finished`` are skipped; others
start with ``--resume`` and so continue from their last checkpoint. ``--dry-run`` prints the plan.
Then: ``tools/collect_results.py <output-dir>`` makes the table.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mlla_rtdetr.errors import ConfigError, run_main
from mlla_rtdetr.launch.slurm import add_cluster_arguments, make_executor, options_from_args
from mlla_rtdetr.sweep.backends import run_local, submit_slurm, train_argv, train_command
from mlla_rtdetr.sweep.plan import (
    expand_grid,
    expand_list,
    format_plan,
    load_run_list,
    parse_axis,
    parse_run_line,
)
from mlla_rtdetr.sweep.records import SWEEP_MANIFEST, is_finished, write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", nargs="+", required=True, metavar="FILE",
                        help="one or more base configs (several -> a 'config' axis)")
    parser.add_argument("--set", dest="axes", action="append", default=[], metavar="KEY=V1,V2",
                        help="a swept key and its values (repeatable; grid = product of all)")
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="'K=V K2=V2'",
                        help="one explicit run (repeatable), 'k=v ...' or 'label=x | k=v ...'; "
                             "with --set: each run x each grid point")
    parser.add_argument("--runs-file", default=None,
                        help="file with one run per line ('key=value key2=value2' or "
                             "'label=x | key=value ...'), '#' comments")
    parser.add_argument("--output-dir", default=None,
                        help="sweep root (default: output/sweeps/<first config name>)")
    parser.add_argument("--backend", choices=("local", "slurm"), default="local",
                        help="local processes (default) or Slurm jobs via submitit")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local backend: number of runs at a time")
    parser.add_argument("--devices", default=None,
                        help="local backend: GPU ids to split between parallel runs, e.g. 0,1,2,3")
    parser.add_argument("--num-gpus", type=int, default=None,
                        help="local backend: processes (GPUs) per run, passed to train_net")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--print-sbatch", action="store_true",
                        help="with --backend slurm --dry-run: also print the sbatch script")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides applied to every run")
    add_cluster_arguments(parser)
    return parser


def plan_runs(args):
    root = Path(args.output_dir or Path("output") / "sweeps" / Path(args.config_file[0]).stem)
    run_list = [parse_run_line(r) for r in args.runs]
    if args.runs_file:
        run_list += load_run_list(args.runs_file)
    axes = [parse_axis(a) for a in args.axes]
    if run_list:
        return root, expand_list(args.config_file, run_list, root, fixed=args.overrides, axes=axes)
    return root, expand_grid(args.config_file, axes, root, fixed=args.overrides)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root, runs = plan_runs(args)
    if args.backend == "slurm":
        cluster = options_from_args(args, default_folder=root / "submitit")
    elif args.jobs < 1:
        raise ConfigError("--jobs must be >= 1.")

    for run in runs:
        run.extra["status"] = "finished: skip" if is_finished(run.output_dir) else "to run"
    todo = [r for r in runs if not is_finished(r.output_dir)]
    if args.backend == "local":
        commands = [train_command(r, args.num_gpus) for r in runs]
    else:
        commands = [["<slurm job>", "tools/train_net.py"] + train_argv(r) for r in runs]
    print(format_plan(runs, commands))
    print(f"{len(runs) - len(todo)} finished run(s) skipped, {len(todo)} to run "
          f"({args.backend} backend).")
    if args.dry_run:
        if args.backend == "slurm" and args.print_sbatch:
            from mlla_rtdetr.launch.slurm import sbatch_script

            print(sbatch_script(cluster))
        return 0

    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / SWEEP_MANIFEST, {
        "config_files": list(args.config_file),
        "axes": list(args.axes),
        "runs_list": list(args.runs),
        "fixed": list(args.overrides),
        "backend": args.backend,
        "command": [sys.executable] + sys.argv,
        "runs": [r.to_dict() for r in runs],
    })
    if not todo:
        return 0
    if args.backend == "slurm":
        executor = make_executor(cluster)
        submit_slurm(todo, [train_argv(r) for r in todo], executor, sweep_name=root.name)
        print(f"Submitted {len(todo)} job(s); submitit logs in {cluster.folder}.")
        return 0
    devices = args.devices.split(",") if args.devices else None
    codes = run_local(
        todo,
        [train_command(r, args.num_gpus) for r in todo],
        jobs=args.jobs,
        devices=devices,
        gpus_per_run=args.num_gpus or 1,
        sweep_name=root.name,
    )
    failed = [name for name, rc in codes.items() if rc != 0]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"All {len(codes)} run(s) finished. Table: tools/collect_results.py {root}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
