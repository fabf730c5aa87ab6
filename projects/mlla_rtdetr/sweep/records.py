"""The small JSON files a sweep keeps next to each run.

``<run_dir>/sweep_run.json`` records what the run is (config, overrides, swept values) and how
it went (status ``pending`` | ``running`` | ``finished`` | ``failed``, return code, times). A run
is skipped by later sweeps only when its status is ``finished``.
``<run_dir>/model_stats.json`` (optional) holds ``params``, ``gflops``, ``latency_ms`` written by
tools/analyze_model.py, tools/benchmark.py or ``collect_results.py --analyze``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import DataError

RUN_RECORD = "sweep_run.json"
MODEL_STATS = "model_stats.json"
SWEEP_MANIFEST = "sweep.json"

PENDING, RUNNING, FINISHED, FAILED = "pending", "running", "finished", "failed"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers never see a half-written file (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Optional[Any]:
    """Parsed JSON content, or None if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); delete or fix it.") from e


def read_record(run_dir: Path) -> Optional[Dict[str, Any]]:
    return read_json(Path(run_dir) / RUN_RECORD)


def update_record(run_dir: Path, **fields: Any) -> Dict[str, Any]:
    """Merge ``fields`` into the run record (creating it) and return the new record."""
    record = read_record(run_dir) or {}
    record.update(fields)
    record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(Path(run_dir) / RUN_RECORD, record)
    return record


def is_finished(run_dir: Path) -> bool:
    record = read_record(run_dir)
    return bool(record) and record.get("status") == FINISHED


def read_model_stats(run_dir: Path) -> Dict[str, Any]:
    """``model_stats.json`` with ``params`` (count), ``gflops``, ``latency_ms`` at the top level.

    tools/analyze_model.py's ``--output`` format is accepted as well (``params: {"total": n, ...}``,
    ``flops: {"gflops": g, ...}``), so its report can be saved there directly.
    """
    stats = dict(read_json(Path(run_dir) / MODEL_STATS) or {})
    params = stats.get("params")
    if isinstance(params, dict) and "total" in params:
        stats["params"] = params["total"]
    flops = stats.get("flops")
    if "gflops" not in stats and isinstance(flops, dict) and "gflops" in flops:
        stats["gflops"] = flops["gflops"]
    return stats


def merge_model_stats(run_dir: Path, stats: Dict[str, Any]) -> Dict[str, Any]:
    """Add keys to ``model_stats.json`` without dropping keys other tools wrote."""
    merged = dict(read_json(Path(run_dir) / MODEL_STATS) or {})
    merged.update({k: v for k, v in stats.items() if v is not None})
    write_json_atomic(Path(run_dir) / MODEL_STATS, merged)
    return merged
