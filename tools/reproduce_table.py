#!/usr/bin/env python
"""Reproduce the RT-DETR / RT-DETRv2 / D-FINE / DEIM model-zoo table from the official checkpoints.

Given a folder of official checkpoints (the file names of the official releases, e.g.
``rtdetrv2_r18vd_120e_coco_rerun_48.1.pth``, ``dfine_s_coco.pth``,
``deim_dfine_hgnetv2_s_coco_120e.pth``; see ``projects/mlla_rtdetr/model_zoo.py`` and the model-zoo
README), every row whose file is found is

* evaluated on COCO val2017 (``DETECTRON2_DATASETS``) with ``tools/train_net.py --eval-only`` in a
  subprocess (the official RT-DETR / D-FINE / DEIM file is detected and converted on load;
  ``--num-gpus`` is passed on),
* counted: parameters, GFLOPs at ``--input-size`` as the official numbers count them
  (:func:`mlla_rtdetr.utils.flops.official_gflops`) and as our ``forward_raw`` executes them
  (:func:`mlla_rtdetr.utils.flops.model_flops`),
* timed: batch-1 ``forward_raw`` latency after ``deploy()``, every row interleaved call by call
  in one run (:mod:`mlla_rtdetr.utils.bench_cases` and :func:`mlla_rtdetr.utils.timing.measure_interleaved`,
  as ``tools/benchmark.py inference`` does),

and printed as a Markdown table of published vs measured numbers, also written to
``--output-dir`` as ``table.md``, ``table.csv`` and ``results.json`` (with the environment).
Trailing ``key=value`` overrides apply to every row (e.g. another COCO-format val set; precede
them with ``--`` after an option that takes several values). A row that fails is reported and
the others still run; the exit status is then 1.

Examples::

    DETECTRON2_DATASETS=/data python tools/reproduce_table.py --checkpoints weights/ --num-gpus 8 \\
        --device cuda --output-dir output/reproduce
    python tools/reproduce_table.py --checkpoints weights/ --list        # which rows would run
    python tools/reproduce_table.py --checkpoints weights/ --rows 'rtdetrv2_r18vd*' --no-latency
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from mlla_rtdetr.utils.console import tool_log

TRAIN_NET = Path(__file__).resolve().parent / "train_net.py"

COLUMNS = [
    ("table", "table"), ("model", "model"), ("recipe", "recipe"), ("ap_published", "AP pub."), ("ap", "AP ours"),
    ("ap_delta", "ΔAP"), ("ap50_published", "AP50 pub."), ("ap50", "AP50 ours"),
    ("params_published_m", "params pub. (M)"), ("params_m", "params ours (M)"),
    ("gflops_published", "GFLOPs official"), ("gflops_official_count", "GFLOPs ours (official count)"),
    ("gflops_executed", "GFLOPs ours (executed)"), ("latency_ms", "latency (ms)"), ("fps_t4_published", "T4 FPS pub."),
    ("latency_t4_ms_published", "T4 latency pub. (ms)"),
    ("weights", "checkpoint"), ("status", "status"),
]


log = tool_log("reproduce_table")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", required=True, help="folder holding official checkpoint files (searched recursively)")
    p.add_argument("--output-dir", default="output/reproduce_table", help="evaluation outputs and the tables")
    p.add_argument("--rows", nargs="+", default=None,
                   help="only rows whose recipe or model name matches one of these fnmatch patterns")
    p.add_argument("--list", action="store_true", help="list the rows that have a checkpoint and exit")
    p.add_argument("--num-gpus", type=int, default=1, help="processes of each evaluation (train_net --num-gpus)")
    p.add_argument("--device", default=None, help="device of the latency / FLOP measurements (default: cuda if available)")
    p.add_argument("--input-size", type=int, default=640, help="square input side of GFLOPs and latency")
    p.add_argument("--no-flops", action="store_true", help="skip the GFLOPs counts")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured calls per row before timing")
    p.add_argument("--iters", type=int, default=10, help="measured calls per row (interleaved across rows)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the latency run (CPU)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value for every row")
    return p


def find_rows(args) -> List[Dict[str, Any]]:
    """Rows of the model zoo whose official checkpoint is in ``args.checkpoints``."""
    from mlla_rtdetr.config import config_path
    from mlla_rtdetr.errors import ConfigError
    from mlla_rtdetr.model_zoo import MODEL_ZOO

    root = Path(args.checkpoints)
    if not root.is_dir():
        raise ConfigError(f"--checkpoints '{root}' is not a folder.")
    files = {}
    for path in sorted(root.rglob("*.pth")):
        files.setdefault(path.name, path)
    rows = []
    for entry in MODEL_ZOO:
        if args.rows and not any(fnmatch.fnmatch(entry.recipe, p) or fnmatch.fnmatch(entry.name, p) for p in args.rows):
            continue
        if entry.weights not in files:
            continue
        try:
            recipe = str(config_path(f"{entry.recipe}.py"))
        except FileNotFoundError:
            log(f"{entry.name}: recipe {entry.recipe}.py is not in this checkout; skipped")
            continue
        rows.append({"entry": entry, "checkpoint": str(files[entry.weights].resolve()), "config_file": recipe})
    if not rows:
        expected = sorted({e.weights for e in MODEL_ZOO})
        raise ConfigError(
            f"No official checkpoint of the model zoo found under '{root}'"
            + (f" for --rows {args.rows}" if args.rows else "")
            + ". Expected file names such as: " + ", ".join(expected[:6]) + ", ... (projects/mlla_rtdetr/model_zoo.py)."
        )
    return rows


def evaluate(row: Dict[str, Any], args, out_dir: Path) -> Dict[str, Any]:
    """``train_net.py --eval-only`` on the row's checkpoint; returns its bbox metrics (EMA task if present)."""
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", row["config_file"], "--eval-only",
           "--num-gpus", str(args.num_gpus), f"train.init_checkpoint={row['checkpoint']}",
           f"train.output_dir={out_dir}", *args.opts]
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"{row['entry'].name}: evaluating {Path(row['checkpoint']).name}")
    with open(out_dir / "reproduce_eval.log", "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    result_file = out_dir / "eval_only_results.json"
    if proc.returncode != 0 or not result_file.is_file():
        tail = (out_dir / "reproduce_eval.log").read_text()[-1500:]
        raise RuntimeError(f"evaluation failed (exit {proc.returncode}); log {out_dir / 'reproduce_eval.log'}:\n{tail}")
    results = json.loads(result_file.read_text())["results"]
    task = "bbox_ema" if "bbox_ema" in results else "bbox"
    return {"task": task, **results[task]}


def count(row: Dict[str, Any], args, device: str) -> Dict[str, Any]:
    """Parameters and GFLOPs of the row's model (weights do not matter)."""
    from mlla_rtdetr.engine import build_model, load_config
    from mlla_rtdetr.utils.flops import count_parameters, model_flops, official_gflops

    cfg = load_config(row["config_file"], args.opts)
    model = build_model(cfg, checkpoint="", device=device)
    out = {"params": count_parameters(model)["total"]}
    if not args.no_flops:
        size = args.input_size
        report = model_flops(model, size, size)
        out["gflops_executed"] = report.gflops
        out["gflops_official_count"] = official_gflops(model, size, size, report=report)
    return out


def time_rows(rows: List[Dict[str, Any]], args, device: str) -> Dict[str, float]:
    """Median batch-1 latency (ms) of every distinct recipe, interleaved call by call in one run."""
    from mlla_rtdetr.utils.bench_cases import build_case
    from mlla_rtdetr.utils.timing import measure_interleaved

    cases = {}
    for row in rows:
        recipe = row["entry"].recipe
        if recipe in cases:
            continue
        spec = {"kind": "inference", "config_file": row["config_file"], "overrides": list(args.opts),
                "checkpoint": "", "input_size": args.input_size, "batch_size": 1, "deploy": True,
                "device": device, "threads": args.threads, "seed": 0}
        log(f"{recipe}: building the latency case")
        cases[recipe] = build_case(spec).fn
    stats = measure_interleaved(cases, warmup=args.warmup, iters=args.iters, device=device, progress=log)
    return {k: v.median for k, v in stats.items()}


def table_rows(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for row in rows:
        e, m = row["entry"], row.get("measured", {})
        ap = m.get("AP")
        out.append({
            "table": e.table, "model": e.name, "recipe": e.recipe, "ap_published": e.ap, "ap": ap,
            "ap_delta": None if ap is None else ap - e.ap, "ap50_published": e.ap50, "ap50": m.get("AP50"),
            "params_published_m": e.params / 1e6, "params_m": m["params"] / 1e6 if "params" in m else None,
            "gflops_published": e.gflops, "gflops_official_count": m.get("gflops_official_count"),
            "gflops_executed": m.get("gflops_executed"), "latency_ms": m.get("latency_ms"),
            "fps_t4_published": e.fps_t4, "latency_t4_ms_published": e.latency_t4_ms, "weights": e.weights,
            "status": row.get("status", "ok"),
        })
    return out


def write_outputs(table: List[Dict[str, Any]], payload: Dict[str, Any], out: Path) -> str:
    from mlla_rtdetr.utils.report import markdown_table, write_json

    keys = [k for k, _ in COLUMNS]
    md = markdown_table(table, keys, headers=dict(COLUMNS), digits=2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(md + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
    write_json(str(out / "results.json"), payload)
    return md


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    rows = find_rows(args)
    log(f"{len(rows)} row(s) with an official checkpoint: " + ", ".join(r["entry"].name for r in rows))
    if args.list:
        for r in rows:
            print(f"{r['entry'].name:24s} {r['entry'].recipe:32s} {r['checkpoint']}")
        return 0

    import torch

    from mlla_rtdetr.utils.report import environment

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.output_dir)
    for row in rows:
        measured: Dict[str, Any] = {}
        row["measured"] = measured
        try:
            measured.update(evaluate(row, args, out / row["entry"].key))
            measured.update(count(row, args, device))
        except Exception as e:  # one broken row must not cost the others
            row["status"] = f"failed: {str(e).splitlines()[0]}"
            log(f"{row['entry'].name}: {e}")
            continue
        log(f"{row['entry'].name}: AP {measured['AP']:.2f} (published {row['entry'].ap})")
    ok_rows = [r for r in rows if "status" not in r]
    if ok_rows and not args.no_latency:
        if args.threads:
            torch.set_num_threads(args.threads)
        latency = time_rows(ok_rows, args, device)
        for r in ok_rows:
            r["measured"]["latency_ms"] = latency[r["entry"].recipe]

    table = table_rows(rows)
    payload = {"rows": table, "overrides": list(args.opts), "input_size": args.input_size, "device": device,
               "latency": None if args.no_latency else {"batch_size": 1, "deploy": True, "warmup": args.warmup,
                                                        "iters": args.iters, "statistic": "median",
                                                        "threads": args.threads or torch.get_num_threads()},
               "environment": environment()}
    md = write_outputs(table, payload, out)
    print(md)
    print(f"\nwrote {out / 'table.md'}, {out / 'table.csv'} and {out / 'results.json'}")
    return 0 if len(ok_rows) == len(rows) else 1


if __name__ == "__main__":
    from mlla_rtdetr.errors import run_main

    sys.exit(run_main(main))
