#!/usr/bin/env python
"""Make a paper-style table from training output directories (e.g. a tools/sweep.py root).

    tools/collect_results.py output/sweeps/attention
    tools/collect_results.py output/sweeps/attention --analyze      # also count GFLOPs (fvcore)
    tools/collect_results.py output/sweeps/attention --latency      # also time each model (CPU)
    tools/collect_results.py runA runB --out output/table            # any run directories
    tools/collect_results.py output/sweeps/deim_convergence --each-eval  # a row per evaluation point

Prints Markdown and writes ``<out>.md`` and ``<out>.csv`` (per run) and, when the runs sweep the
seed key (``train.seed``), ``<out>_seeds.csv`` with mean and sample standard deviation over seeds.
Columns: the swept values, AP, AP50, AP75, APs, APm, APl (COCO box metrics of the last evaluation
in ``metrics.json``: the EMA weights' if evaluated, else the raw weights'; with ``--each-eval``
every evaluation, keyed by the iterations trained by then: AP at equal iterations), Params (M), GFLOPs,
Latency (ms). Best value per column in bold. Params/GFLOPs/latency come from
``<run_dir>/model_stats.json`` (tools/analyze_model.py, tools/benchmark.py); missing params are
counted from the run's config, missing GFLOPs with ``--analyze``, missing latency with ``--latency``
(tools/benchmark.py's inference case: batch 1, deploy(), median of ``--latency-iters`` calls, all
distinct models of the table timed interleaved in one process), or from a ``tools/benchmark.py
inference --output`` JSON (``--benchmark``; matched by config name, it overrides the runs' own).

Figures for a paper (PNG next to the tables):

    tools/collect_results.py output/sweeps/placement --benchmark bench.json --plot latency_ms gflops
        -> <out>_AP_vs_latency_ms.png, <out>_AP_vs_gflops.png: AP (--plot-metric) against each cost,
           one point per row of the seeds table (mean ± std) or per run, with the Pareto front
    tools/collect_results.py output/sweeps/placement --curves total_loss bbox_ema/AP
        -> <out>_curve_total_loss.png ...: the logged value against the iteration, mean ± std band
           over the seeds of each row
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mlla_rtdetr.errors import UserError, run_main
from mlla_rtdetr.sweep.records import merge_model_stats
from mlla_rtdetr.sweep.results import (
    COCO_KEYS,
    STAT_KEYS,
    benchmark_stats,
    collect,
    per_evaluation,
    run_config_name,
)
from mlla_rtdetr.sweep.table import (
    DEFAULT_SEED_KEY,
    group_by_seed,
    per_run_table,
    seed_table,
    table_points,
    to_csv,
    to_markdown,
)

COST_COLUMNS = {"latency_ms": "Latency (ms)", "gflops": "GFLOPs", "params": "Params (M)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="+", help="sweep roots or run directories")
    parser.add_argument("--out", default=None,
                        help="output path prefix (default: <first dir>/results)")
    parser.add_argument("--seed-key", default=DEFAULT_SEED_KEY,
                        help="swept key averaged over in the seeds table")
    parser.add_argument("--task", default="auto",
                        help="evaluation result name: auto (bbox_ema if present, else bbox), bbox, bbox_ema")
    parser.add_argument("--each-eval", action="store_true",
                        help="a row per evaluation of each run (column 'iterations': iterations trained), "
                             "not only the last: AP at equal iterations, mean ± std over seeds at each")
    parser.add_argument("--analyze", action="store_true",
                        help="count GFLOPs with fvcore when model_stats.json lacks them (cached there)")
    parser.add_argument("--latency", action="store_true",
                        help="time models whose model_stats.json lacks latency_ms (cached there)")
    parser.add_argument("--latency-iters", type=int, default=10, help="timed calls per model for --latency")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for --latency (default: torch's)")
    parser.add_argument("--device", default="cpu", help="device for --latency")
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="image size for --analyze / --latency (default: the model's eval_size or 640x640)")
    parser.add_argument("--no-params", action="store_true",
                        help="do not count missing parameters from the configs")
    parser.add_argument("--all", action="store_true",
                        help="also list runs that have no evaluation results yet")
    parser.add_argument("--no-write", action="store_true", help="only print the tables")
    parser.add_argument("--benchmark", default=None,
                        help="tools/benchmark.py inference JSON: latency / GFLOPs / params per config name")
    parser.add_argument("--plot", nargs="+", default=[], choices=sorted(COST_COLUMNS),
                        help="cost-accuracy figures: --plot-metric against each of these costs")
    parser.add_argument("--plot-metric", default="AP", choices=COCO_KEYS, help="accuracy axis of --plot")
    parser.add_argument("--curves", nargs="+", default=[], metavar="KEY",
                        help="training-curve figures of these metrics.json keys (e.g. total_loss, bbox_ema/AP)")
    return parser


def fill_stats(results, gflops: bool, input_size, count_params: bool) -> None:
    from mlla_rtdetr.sweep.model_stats import StatsCache

    cache = StatsCache(gflops=gflops, input_size=input_size)
    for r in results:
        need_params = count_params and "params" not in r.stats
        need_gflops = gflops and "gflops" not in r.stats
        if not (need_params or need_gflops):
            continue
        try:
            stats = cache.stats(r.record, r.run_dir)
        except Exception as e:
            logging.warning(f"Cannot compute model stats of {r.run_dir}: {type(e).__name__}: {e}")
            continue
        if not stats:
            logging.warning(f"{r.run_dir}: no config to count parameters from.")
            continue
        if gflops:  # computed on request: keep them with the run for the next table
            merge_model_stats(r.run_dir, {k: v for k, v in stats.items() if k not in r.stats})
        r.stats.update({k: v for k, v in stats.items() if k in STAT_KEYS and k not in r.stats})


def fill_latency(results, input_size, threads, device: str, iters: int) -> None:
    """Time every distinct model among the runs without ``latency_ms`` (interleaved, one process)
    and store the numbers in their model_stats.json."""
    from mlla_rtdetr.sweep.model_stats import (
        default_input_size,
        inference_spec,
        load_run_config,
        measure_latencies,
        model_key,
    )

    groups = {}
    for r in results:
        if "latency_ms" in r.stats:
            continue
        cfg = load_run_config(r.record, r.run_dir) if r.record.get("config_file") else None
        if cfg is None:
            logging.warning(f"{r.run_dir}: no sweep_run.json with a config file; cannot time its model.")
            continue
        key = model_key(cfg)
        if key not in groups:  # named after its first run in the progress messages
            size = input_size or default_input_size(cfg)
            groups[key] = (r.name, inference_spec(r.record, size, threads, device), [])
        groups[key][2].append(r)
    if not groups:
        return
    logging.info(f"Timing {len(groups)} distinct model(s) interleaved ({iters} calls each) ...")
    timed = measure_latencies({name: spec for name, spec, _ in groups.values()}, iters=iters,
                              progress=lambda m: logging.info(f"latency: {m}"))
    for name, _, runs in groups.values():
        for r in runs:
            merge_model_stats(r.run_dir, timed[name])
            r.stats["latency_ms"] = timed[name]["latency_ms"]


def fill_from_benchmark(results, path: str) -> None:
    stats = benchmark_stats(Path(path))
    for r in results:
        found = stats.get(run_config_name(r) or "")
        if found:
            r.stats.update(found)
    unmatched = [r.name for r in results if (run_config_name(r) or "") not in stats]
    if unmatched:
        logging.warning(f"{path} has no model of {', '.join(unmatched)} (its models: {', '.join(stats)}).")


def plot_figures(args, results, table, out: Path):
    """The cost-accuracy and training-curve PNGs asked for; returns their paths."""
    from mlla_rtdetr.utils.paper_figures import plot_cost_accuracy, plot_seed_curves
    from mlla_rtdetr.utils.plots import metric_series, read_metrics_json

    written = []
    for cost in args.plot:
        header = COST_COLUMNS[cost]
        try:
            points = table_points(table, header, args.plot_metric)
        except KeyError:
            points = []
        if not points:
            raise UserError(f"No run has both {args.plot_metric} and {header}: add --benchmark, --latency "
                            "or --analyze (GFLOPs).")
        path = out.parent / f"{out.name}_{args.plot_metric}_vs_{cost}.png"
        written.append(plot_cost_accuracy(points, header, f"{args.plot_metric} (%)", str(path),
                                          title=f"{args.plot_metric} vs {header} ({table.title.lower()})"))
    groups = group_by_seed(results, args.seed_key)
    for key in args.curves:
        series = [(" ".join(gkey), [metric_series(read_metrics_json(str(r.run_dir / "metrics.json")), key)
                                    for r in members if (r.run_dir / "metrics.json").is_file()])
                  for gkey, members in groups.items()]
        series = [(name, [s for s in runs if len(s[0])]) for name, runs in series]
        series = [(name, runs) for name, runs in series if runs]
        if not series:
            raise UserError(f"No run logged {key!r} in its metrics.json.")
        path = out.parent / f"{out.name}_curve_{key.replace('/', '_')}.png"
        written.append(plot_seed_curves(series, str(path), key, log_y="loss" in key))
    return written


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = collect([Path(d) for d in args.dirs], task=args.task)
    if not results:
        raise UserError(f"no run directories (with sweep_run.json or metrics.json) under {', '.join(args.dirs)}.")
    without = [r for r in results if not r.metrics]
    for r in without:
        print(f"note: {r.name}: no evaluation results yet (status: {r.status})", file=sys.stderr)
    if not args.all:
        results = [r for r in results if r.metrics]
    if not results:
        print("collect_results: error: no run has evaluation results.", file=sys.stderr)
        return 1
    if args.benchmark:
        fill_from_benchmark(results, args.benchmark)
    fill_stats(results, args.analyze, args.input_size, not args.no_params)
    if args.latency:
        if args.latency_iters < 1:
            print("collect_results: error: --latency-iters must be >= 1.", file=sys.stderr)
            return 2
        fill_latency(results, args.input_size, args.threads, args.device, args.latency_iters)

    out = Path(args.out) if args.out else Path(args.dirs[0]) / "results"
    rows = per_evaluation(results, task=args.task) if args.each_eval else results
    table = per_run_table(rows)
    seeds = seed_table(rows, seed_key=args.seed_key)
    tasks = sorted({r.task for r in results if r.task})
    text = [f"## {table.title} ({len(results)} runs{', every evaluation' if args.each_eval else ''}; "
            f"metrics: {', '.join(tasks) or '-'})", "",
            to_markdown(table)]
    if seeds is not None:
        text += ["", f"## {seeds.title}", "", to_markdown(seeds)]
    markdown = "\n".join(text) + "\n"
    print(markdown)
    if not args.no_write:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(markdown)
        out.with_suffix(".csv").write_text(to_csv(table))
        written = [out.with_suffix(".md"), out.with_suffix(".csv")]
        if seeds is not None:
            seeds_csv = out.parent / (out.name + "_seeds.csv")
            seeds_csv.write_text(to_csv(seeds))
            written.append(seeds_csv)
        written += plot_figures(args, results, seeds or table, out)
        print("Wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
