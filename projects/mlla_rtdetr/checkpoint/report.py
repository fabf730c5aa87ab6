"""The one formatter of key tables (missing / unexpected / shape mismatch) for every checkpoint
message: converters, ``train.init_checkpoint`` and the converter tools."""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

__all__ = ["format_shape", "key_table", "shape_mismatch_table"]


def format_shape(shape) -> str:
    """``(80, 256)``; ``(80)`` for one dimension."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def key_table(header: Sequence[str], rows: Iterable[Sequence[str]], max_rows: Optional[int] = None) -> str:
    """Fixed-width table with a dashed rule under ``header``; at most ``max_rows`` rows, then a
    count of the rest. Empty string when there are no rows."""
    rows = [tuple(r) for r in rows]
    if not rows:
        return ""
    more = len(rows) - max_rows if max_rows is not None else 0
    rows = rows[:max_rows] if more > 0 else rows
    widths = [max(len(r[i]) for r in rows + [tuple(header)]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    out = [line.format(*header).rstrip(), line.format(*("-" * w for w in widths))]
    out += [line.format(*r).rstrip() for r in rows]
    if more > 0:
        out.append(f"... and {more} more")
    return "\n".join(out)


def shape_mismatch_table(mismatches: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]) -> str:
    """Table of (key, checkpoint shape, model shape)."""
    return key_table(("key", "checkpoint", "model"),
                     [(k, format_shape(a), format_shape(b)) for k, a, b in mismatches])
