"""Paper-style result tables from collected runs: Markdown (best per column in bold) and CSV.

Two tables are built from the same runs:

* per run: one row per run, columns = swept values, AP, AP50, AP75, APs, APm, APl, Params (M),
  GFLOPs, Latency (ms);
* over seeds: runs that differ only in the seed key are one row with ``mean ± std`` (sample
  standard deviation) and the number of seeds.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .plan import CONFIG_AXIS, short_keys
from .results import RunResult

DEFAULT_SEED_KEY = "train.seed"


@dataclass(frozen=True)
class Column:
    """A numeric result column: ``get`` extracts the value from a run, ``higher_is_better``
    decides which value is bold, ``digits`` is the displayed precision, ``show_std`` whether the
    seeds table shows a standard deviation (not for model properties such as params)."""

    header: str
    get: Callable[[RunResult], Optional[float]]
    higher_is_better: bool
    digits: int
    show_std: bool = True


def _metric(key: str) -> Callable[[RunResult], Optional[float]]:
    return lambda r: r.metrics.get(key)


def _stat(key: str, scale: float = 1.0) -> Callable[[RunResult], Optional[float]]:
    def get(r: RunResult) -> Optional[float]:
        v = r.stats.get(key)
        return None if v is None else float(v) * scale

    return get


RESULT_COLUMNS: Tuple[Column, ...] = tuple(
    Column(k, _metric(k), True, 1) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")
) + (
    Column("Params (M)", _stat("params", 1e-6), False, 2, show_std=False),
    Column("GFLOPs", _stat("gflops"), False, 1, show_std=False),
    Column("Latency (ms)", _stat("latency_ms"), False, 2, show_std=False),
)


@dataclass
class Cell:
    """One numeric cell: the mean over the row's runs, their sample std (None for one run)."""

    mean: Optional[float]
    std: Optional[float] = None
    n: int = 0


@dataclass
class Table:
    """Rows of key cells (swept values, text) and numeric cells, with column metadata."""

    key_headers: List[str]
    columns: List[Column]
    keys: List[List[str]] = field(default_factory=list)
    cells: List[List[Cell]] = field(default_factory=list)
    title: str = ""

    def best(self) -> List[Optional[float]]:
        """Best displayed (rounded) value per numeric column; None where there is nothing to
        single out (fewer than two rows with a value, or all displayed values equal)."""
        out = []
        for j, col in enumerate(self.columns):
            vals = [_shown(row[j].mean, col.digits) for row in self.cells if row[j].mean is not None]
            if len(vals) < 2 or min(vals) == max(vals):
                out.append(None)
            else:
                out.append(max(vals) if col.higher_is_better else min(vals))
        return out


def _swept_keys(runs: Sequence[RunResult]) -> List[str]:
    keys: List[str] = []
    for r in runs:
        for k in r.swept:
            if k not in keys:
                keys.append(k)
    return keys


def _headers(keys: Sequence[str]) -> List[str]:
    names = short_keys([k for k in keys if k != CONFIG_AXIS])
    return [CONFIG_AXIS if k == CONFIG_AXIS else names[k] for k in keys]


def _key_value(run: RunResult, key: str) -> str:
    v = run.swept.get(key)
    if v is None:
        return "-"
    if key == CONFIG_AXIS:
        from pathlib import Path

        return Path(v).stem
    return v


def _used_columns(runs: Sequence[RunResult], columns: Sequence[Column]) -> List[Column]:
    """Drop result columns that no run has (e.g. latency when nothing was benchmarked)."""
    return [c for c in columns if any(c.get(r) is not None for r in runs)]


def per_run_table(runs: Sequence[RunResult], columns: Sequence[Column] = RESULT_COLUMNS) -> Table:
    keys = _swept_keys(runs)
    cols = _used_columns(runs, columns)
    if keys:
        table = Table(key_headers=_headers(keys), columns=cols, title="Per run")
        for r in runs:
            table.keys.append([_key_value(r, k) for k in keys])
            table.cells.append([Cell(c.get(r), None, int(c.get(r) is not None)) for c in cols])
    else:
        table = Table(key_headers=["run"], columns=cols, title="Per run")
        for r in runs:
            table.keys.append([r.name])
            table.cells.append([Cell(c.get(r), None, int(c.get(r) is not None)) for c in cols])
    return table


def _mean_std(values: Sequence[float], with_std: bool = True) -> Cell:
    if not values:
        return Cell(None, None, 0)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 and with_std else None
    return Cell(mean, std, n)


def group_by_seed(runs: Sequence[RunResult], seed_key: str = DEFAULT_SEED_KEY) -> Dict[Tuple[str, ...], List[RunResult]]:
    """Runs that differ only in ``seed_key``, keyed by their other swept values (in run order);
    every run is its own group when no run sweeps ``seed_key``."""
    keys = _swept_keys(runs)
    if seed_key not in keys:
        return {(r.name,): [r] for r in runs}
    group_keys = [k for k in keys if k != seed_key]
    groups: Dict[Tuple[str, ...], List[RunResult]] = {}
    for r in runs:
        groups.setdefault(tuple(_key_value(r, k) for k in group_keys), []).append(r)
    return groups


def table_points(table: Table, x_header: str, y_header: str) -> List[Dict[str, object]]:
    """The rows of ``table`` that have both columns as ``{"name", "x", "y", "y_std"}`` (name: the
    row's key cells; a seeds table's count of seeds left out) for a cost-accuracy plot."""
    headers = [c.header for c in table.columns]
    missing = [h for h in (x_header, y_header) if h not in headers]
    if missing:
        raise KeyError(f"The table has no column {missing}; it has {headers}.")
    jx, jy = headers.index(x_header), headers.index(y_header)
    seeds = bool(table.key_headers) and table.key_headers[-1] == "seeds"
    points = []
    for keys, cells in zip(table.keys, table.cells):
        if cells[jx].mean is None or cells[jy].mean is None:
            continue
        name_keys = keys[:-1] if seeds else keys
        points.append({"name": " ".join(name_keys) or "-", "x": cells[jx].mean, "y": cells[jy].mean,
                       "y_std": cells[jy].std})
    return points


def seed_table(
    runs: Sequence[RunResult],
    seed_key: str = DEFAULT_SEED_KEY,
    columns: Sequence[Column] = RESULT_COLUMNS,
) -> Optional[Table]:
    """Mean ± std over the seed key; None if no run sweeps ``seed_key``."""
    keys = _swept_keys(runs)
    if seed_key not in keys:
        return None
    group_keys = [k for k in keys if k != seed_key]
    cols = _used_columns(runs, columns)
    groups = group_by_seed(runs, seed_key)
    headers = _headers(group_keys) if group_keys else []
    table = Table(key_headers=headers + ["seeds"], columns=cols, title="Mean ± std over seeds")
    for gkey, members in groups.items():
        table.keys.append(list(gkey) + [str(len(members))])
        table.cells.append(
            [_mean_std([v for v in (c.get(r) for r in members) if v is not None], c.show_std)
             for c in cols]
        )
    return table


def _digits(value: float, digits: int) -> int:
    """Decimals to show: the column's, or more for small values so that two significant
    digits remain (a 0.07 GFLOPs toy model is not shown as 0.1)."""
    if value == 0 or not math.isfinite(value) or abs(value) >= 1:
        return digits
    return max(digits, 1 - math.floor(math.log10(abs(value))))


def _shown(value: float, digits: int) -> float:
    return round(value, _digits(value, digits))


def _fmt(cell: Cell, digits: int) -> str:
    if cell.mean is None:
        return "-"
    d = _digits(cell.mean, digits)
    text = f"{cell.mean:.{d}f}"
    if cell.std is not None:
        text += f" ± {cell.std:.{d}f}"
    return text


def to_markdown(table: Table) -> str:
    best = table.best()
    headers = table.key_headers + [c.header for c in table.columns]
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(["---"] * len(table.key_headers) + ["---:"] * len(table.columns)) + " |",
    ]
    for keys, cells in zip(table.keys, table.cells):
        parts = list(keys)
        for j, (col, cell) in enumerate(zip(table.columns, cells)):
            text = _fmt(cell, col.digits)
            if best[j] is not None and cell.mean is not None and _shown(cell.mean, col.digits) == best[j]:
                text = f"**{text}**"
            parts.append(text)
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines)


def _num(v: Optional[float]) -> str:
    # 10 decimals hide float noise (20.099999999999998) and keep every real digit of a metric
    return "" if v is None else repr(round(v, 10))


def to_csv(table: Table) -> str:
    """Plain numbers (not rounded for display); in the seeds table a ``<column> std`` column
    follows each metric column."""
    aggregated = any(cell.std is not None for row in table.cells for cell in row) or (
        table.key_headers and table.key_headers[-1] == "seeds"
    )
    headers = list(table.key_headers)
    with_std = [aggregated and c.show_std for c in table.columns]
    for c, std in zip(table.columns, with_std):
        headers.append(c.header)
        if std:
            headers.append(f"{c.header} std")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for keys, cells in zip(table.keys, table.cells):
        row = list(keys)
        for cell, std in zip(cells, with_std):
            row.append(_num(cell.mean))
            if std:
                row.append(_num(cell.std))
        writer.writerow(row)
    return buf.getvalue()
