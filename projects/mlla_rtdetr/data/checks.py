"""A check that stops a run before it costs anything: every image file of a dataset exists (one
parallel stat pass). The model's class count is checked against the datasets by
:func:`mlla_rtdetr.engine.check_num_classes`."""
from __future__ import annotations

import logging
import os
import stat
from multiprocessing.pool import ThreadPool
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import DataError

__all__ = ["MAX_LISTED", "listing", "stat_image_files", "check_image_files", "STAT_THREADS"]

logger = logging.getLogger(__name__)

MAX_LISTED = 20
"""Problems (missing files, bad records) a message lists before it says "and N more"."""


def listing(items, total: Optional[int] = None) -> str:
    """The first :data:`MAX_LISTED` items, one per indented line, then "... and N more"."""
    items = list(items)
    total = len(items) if total is None else total
    text = "".join(f"\n  {x}" for x in items[:MAX_LISTED])
    if total > MAX_LISTED:
        text += f"\n  ... and {total - MAX_LISTED} more"
    return text


STAT_THREADS = 32
"""Threads of the existence check: stat waits on the file system (network file systems above all),
not on Python, so it scales past the number of cores."""

_CHUNK = 512


def _stat_chunk(chunk: Sequence[Tuple[int, str]]) -> Tuple[List[int], List[int]]:
    missing, empty = [], []
    for i, path in chunk:
        try:
            st = os.stat(path)
        except OSError:
            missing.append(i)
            continue
        if not stat.S_ISREG(st.st_mode):
            missing.append(i)
        elif st.st_size == 0:
            empty.append(i)
    return missing, empty


def stat_image_files(paths: Sequence[str], threads: int = STAT_THREADS) -> Tuple[List[int], List[int]]:
    """Indices of the ``paths`` that are not regular files (missing, unreadable directory entry,
    a folder) and of the empty ones, each in input order; the stat calls run on ``threads`` threads."""
    indexed = list(enumerate(paths))
    chunks = [indexed[i:i + _CHUNK] for i in range(0, len(indexed), _CHUNK)]
    if threads <= 1 or len(chunks) <= 1:
        results = [_stat_chunk(c) for c in chunks]
    else:
        with ThreadPool(min(threads, len(chunks))) as pool:
            results = pool.map(_stat_chunk, chunks)
    missing = [i for m, _ in results for i in m]
    empty = [i for _, e in results for i in e]
    return missing, empty


def check_image_files(dicts: Sequence[Dict[str, Any]], name: str) -> None:
    """Raise :class:`DataError` listing the records whose image file does not exist (the first
    20 and the count); warn about empty files (they are skipped when read, like any image that
    cannot be decoded)."""
    missing, empty = stat_image_files([d["file_name"] for d in dicts])
    if empty:
        logger.warning(
            "Dataset %s: %d image file(s) are empty (0 bytes); they will be skipped when read:%s",
            name, len(empty), listing(dicts[i]["file_name"] for i in empty),
        )
    if missing:
        shown = [f"{dicts[i]['file_name']} (image_id={dicts[i].get('image_id')!r})" for i in missing]
        raise DataError(
            f"Dataset '{name}': {len(missing)} of {len(dicts)} image files do not exist:"
            f"{listing(shown)}\nFix the paths (COCO: image_root joined with each image's file_name) or "
            "remove these images from the annotations; tools/dataset_summary.py lists every problem."
        )
