"""Reading what a training run left in its output directory.

A run directory is recognised by ``sweep_run.json`` (written by tools/sweep.py and tools/submit.py)
or detectron2's ``metrics.json`` (written by the trainer's JSONWriter, one JSON object per line).
COCO box metrics come from the last line of ``metrics.json`` that has them (``bbox/AP``,
``bbox/AP50`` ...; detectron2's COCOEvaluator reports them in percent), else from train_net's
``eval_results.json`` / ``eval_only_results.json``.
"""
from __future__ import annotations

import json
import logging
import math
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DataError, PathNotFoundError
from .records import MODEL_STATS, RUN_RECORD, SWEEP_MANIFEST, read_json, read_model_stats, read_record

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
STAT_KEYS = ("params", "gflops", "latency_ms")


@dataclass
class RunResult:
    """Everything a results table needs about one run.

    Attributes:
        run_dir: the run's output directory.
        name: run name (directory name relative to the sweep root).
        swept: swept config values (axis key -> value text); empty for runs outside a sweep.
        status: ``finished`` | ``failed`` | ``running`` | ``pending`` | ``unknown``.
        metrics: COCO metrics by short name (``AP``, ``AP50`` ...), in percent.
        iteration: training iteration at which ``metrics`` were evaluated (None if unknown).
        stats: ``params`` (count), ``gflops``, ``latency_ms`` where known.
        record: the run's ``sweep_run.json`` content.
        task: evaluation result name the metrics come from (``bbox_ema`` or ``bbox``).
    """

    run_dir: Path
    name: str
    swept: Dict[str, str] = field(default_factory=dict)
    status: str = "unknown"
    metrics: Dict[str, float] = field(default_factory=dict)
    iteration: Optional[int] = None
    stats: Dict[str, float] = field(default_factory=dict)
    record: Dict[str, Any] = field(default_factory=dict)
    task: Optional[str] = None


def read_metrics_lines(path: Path) -> List[Dict[str, Any]]:
    """All JSON objects of a detectron2 ``metrics.json`` (a truncated last line is ignored)."""
    entries = []
    if not Path(path).is_file():
        return entries
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                # a run killed while the writer flushed leaves a partial last line
                logger.warning(f"Skipping an unreadable line in {path}")
    return entries


def _entry_metrics(entry: Dict[str, Any], task: str):
    """(COCO metrics by short name, task) of one metrics.json entry, or (None, None) without ``<task>/AP``."""
    if task == "auto":
        found = next((t for t in ("bbox_ema", "bbox") if f"{t}/AP" in entry), None)
    else:
        found = task if f"{task}/AP" in entry else None
    if found is None:
        return None, None
    metrics = {}
    for k in COCO_KEYS:
        v = entry.get(f"{found}/{k}")
        # COCOeval reports NaN for an empty area range (e.g. no large objects): no value
        if v is not None and math.isfinite(float(v)):
            metrics[k] = float(v)
    return metrics, found


def find_eval_metrics(entries: Sequence[Dict[str, Any]], task: str = "auto"):
    """The last entry having ``<task>/AP``: returns (metrics by short name, iteration, task).

    ``task="auto"`` takes the EMA weights' results (``bbox_ema``, what RT-DETR reports) when
    the run evaluated them, else the raw weights' (``bbox``).
    """
    for entry in reversed(entries):
        metrics, found = _entry_metrics(entry, task)
        if found is not None:
            return metrics, entry.get("iteration"), found
    return {}, None, None


EVAL_POINT_KEY = "iterations"
"""Pseudo swept key of :func:`per_evaluation`: the iterations trained when a run was evaluated."""


def per_evaluation(results: Sequence["RunResult"], task: str = "auto") -> List["RunResult"]:
    """One result per evaluation of each run (from its metrics.json), with the iterations
    trained by then as the swept value ``EVAL_POINT_KEY``: tables of AP at
    equal iterations (mean ± std over seeds at each evaluation point)."""
    out = []
    for r in results:
        entries = read_metrics_lines(r.run_dir / METRICS_FILE)
        # an evaluation during training is logged at the index of the step just done (trained: index
        # + 1), the one after training at max_iter (trained: max_iter = last step's index + 1)
        steps = [int(e["iteration"]) for e in entries if "total_loss" in e and e.get("iteration") is not None]
        trained_max = max(steps) + 1 if steps else None
        for entry in entries:
            metrics, found = _entry_metrics(entry, r.task or task)
            if found is None or entry.get("iteration") is None:
                continue
            trained = int(entry["iteration"]) + 1
            point = str(min(trained, trained_max) if trained_max else trained)
            out.append(dataclasses.replace(r, name=f"{r.name},{EVAL_POINT_KEY}={point}", metrics=metrics,
                                           iteration=entry["iteration"], task=found,
                                           swept={**r.swept, EVAL_POINT_KEY: point}))
    return out


EVAL_RESULTS_FILES = ("eval_results.json", "eval_only_results.json")


def _eval_results_file(run_dir: Path, task: str):
    """Fallback: the train_net's ``eval_results.json`` / ``eval_only_results.json``
    (``{"iteration": i, "results": {"bbox_ema": {"AP": ...}}}``)."""
    for name in EVAL_RESULTS_FILES:
        data = read_json(run_dir / name)
        if not data or not isinstance(data.get("results"), dict):
            continue
        flat = {"iteration": data.get("iteration")}
        for t, values in data["results"].items():
            if isinstance(values, dict):
                flat.update({f"{t}/{k}": v for k, v in values.items()})
        metrics, iteration, found = find_eval_metrics([flat], task)
        if metrics:
            return metrics, iteration, found
    return {}, None, None


def read_run(run_dir: Path, root: Optional[Path] = None, task: str = "auto") -> RunResult:
    run_dir = Path(run_dir)
    record = read_record(run_dir) or {}
    name = record.get("name") or (str(run_dir.relative_to(root)) if root else run_dir.name)
    metrics, iteration, found = find_eval_metrics(read_metrics_lines(run_dir / METRICS_FILE), task)
    if not metrics:
        metrics, iteration, found = _eval_results_file(run_dir, task)
    task = found
    stats = {k: v for k, v in read_model_stats(run_dir).items() if k in STAT_KEYS and v is not None}
    return RunResult(
        run_dir=run_dir,
        name=name,
        swept=dict(record.get("swept") or {}),
        status=record.get("status", "unknown"),
        metrics=metrics,
        iteration=iteration,
        stats=stats,
        record=record,
        task=task,
    )


def _is_run_dir(path: Path) -> bool:
    return any((path / f).is_file() for f in (RUN_RECORD, METRICS_FILE) + EVAL_RESULTS_FILES)


def find_run_dirs(roots: Sequence[Path], max_depth: int = 3) -> List[Path]:
    """Run directories under the given roots (a root may itself be a run directory).

    Order: the order of the sweep manifest (``sweep.json``) if a root has one, then by path.
    """
    found: List[Path] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise PathNotFoundError(f"Results directory '{root}' does not exist.")
        if _is_run_dir(root):
            found.append(root)
            continue
        manifest = read_json(root / SWEEP_MANIFEST)
        ordered = []
        if manifest:
            for run in manifest.get("runs", []):
                p = Path(run["output_dir"])
                if not p.is_absolute() or not p.exists():
                    p = root / run["name"]
                if p.is_dir():
                    ordered.append(p)
        rest = []
        frontier = [root]
        for _ in range(max_depth):
            nxt = []
            for d in frontier:
                for child in sorted(p for p in d.iterdir() if p.is_dir()):
                    if _is_run_dir(child):
                        rest.append(child)
                    else:
                        nxt.append(child)
            frontier = nxt
        seen = {p.resolve() for p in ordered}
        found.extend(ordered + [p for p in rest if p.resolve() not in seen])
    return found


def collect(roots: Sequence[Path], task: str = "auto") -> List[RunResult]:
    results = []
    for root in roots:
        root = Path(root)
        for d in find_run_dirs([root]):
            results.append(read_run(d, root=root if d != root else root.parent, task=task))
    return results


def benchmark_stats(path: Path) -> Dict[str, Dict[str, float]]:
    """``{config name: {"latency_ms", "gflops", "params"}}`` from a ``tools/benchmark.py
    inference --output`` JSON: per model, its first row (the plainest variant measured) at the
    smallest batch size; latency is the median time per image, GFLOPs are present with --flops."""
    data = read_json(Path(path))
    if data is None:
        raise PathNotFoundError(f"Benchmark file '{path}' does not exist.")
    rows = data.get("rows") if isinstance(data, dict) else None
    if data.get("mode") not in ("inference", None) or not isinstance(rows, list) or not all(
            isinstance(r, dict) and "config" in r and "per_image_ms" in r for r in rows):
        raise DataError(f"'{path}' is not the JSON of `tools/benchmark.py inference --output` "
                        f"(mode {data.get('mode')!r}).")
    out: Dict[str, Dict[str, float]] = {}
    smallest: Dict[str, int] = {}
    for r in rows:
        smallest[r["config"]] = min(smallest.get(r["config"], r["batch_size"]), r["batch_size"])
    for r in rows:
        if r["config"] in out or r["batch_size"] != smallest[r["config"]]:
            continue
        out[r["config"]] = {k: float(v) for k, v in (("latency_ms", r["per_image_ms"]), ("gflops", r.get("gflops")),
                                                     ("params", r.get("params"))) if v is not None}
    return out


def run_config_name(result: "RunResult") -> Optional[str]:
    """The config file stem of a run (its record's config, or the swept config axis)."""
    config = result.record.get("config_file") or result.swept.get("config")
    return Path(str(config)).stem if config else None


__all__ = [
    "benchmark_stats",
    "run_config_name",
    "COCO_KEYS",
    "STAT_KEYS",
    "METRICS_FILE",
    "MODEL_STATS",
    "RunResult",
    "collect",
    "find_eval_metrics",
    "find_run_dirs",
    "read_metrics_lines",
    "read_run",
]
