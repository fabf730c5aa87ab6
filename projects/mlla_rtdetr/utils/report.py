"""Markdown tables and JSON result files for the tools."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from typing import Any, Dict, Optional, Sequence

import torch


def format_value(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Dict[str, Any]], columns: Optional[Sequence[str]] = None,
                   headers: Optional[Dict[str, str]] = None, digits: int = 2) -> str:
    """Render ``rows`` (list of dicts) as a GitHub markdown table.

    Args:
        columns: keys to show, in order (default: keys of the first row).
        headers: optional display names for the keys.
    """
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    headers = headers or {}
    head = [headers.get(c, c) for c in columns]
    body = [[format_value(r.get(c), digits) for c in columns] for r in rows]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in columns]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def environment() -> Dict[str, Any]:
    """Facts that make a measurement reproducible / comparable."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    return env


def write_json(path: str, payload: Dict[str, Any]) -> str:
    """Write ``payload`` as indented JSON (creating the parent folder); returns the path."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=_json_default)
        f.write("\n")
    return path


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def ratio(value: Optional[float], baseline: Optional[float]) -> Optional[float]:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline

