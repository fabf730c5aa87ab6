"""Config sweeps and result tables: plan (grid/list expansion, run names), launch backends,
run records, result reading and paper-style tables. Used by tools/sweep.py and
tools/collect_results.py."""
from .plan import Axis, RunSpec, expand_grid, expand_list, parse_axis
from .results import RunResult, collect
from .table import per_run_table, seed_table, to_csv, to_markdown

__all__ = [
    "Axis",
    "RunSpec",
    "RunResult",
    "collect",
    "expand_grid",
    "expand_list",
    "parse_axis",
    "per_run_table",
    "seed_table",
    "to_csv",
    "to_markdown",
]
