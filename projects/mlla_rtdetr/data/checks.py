"""Checks that stop a run before it costs anything: every image file of a dataset exists (one
parallel stat pass), and the model and the datasets agree on the classes."""
from __future__ import annotations

import logging
import os
import stat
from collections import OrderedDict
from multiprocessing.pool import ThreadPool
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, DataError

__all__ = ["MAX_LISTED", "listing", "stat_image_files", "check_image_files", "check_num_classes", "STAT_THREADS"]

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


# ----------------------------------------------------------------------------- classes
_CLASS_KEYS = ("model.num_classes", "model.criterion.num_classes", "model.decoder.num_classes")


def _literal_int(cfg: DictConfig, key: str) -> Optional[int]:
    """The int at ``key`` when it is written there (not an interpolation of another key)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None)
    if not OmegaConf.is_config(parent) or leaf not in parent or OmegaConf.is_interpolation(parent, leaf):
        return None
    value = parent[leaf]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _model_counts(cfg: DictConfig, model) -> "OrderedDict[str, int]":
    counts: "OrderedDict[str, int]" = OrderedDict()
    if model is not None:
        m = getattr(model, "module", model)  # DistributedDataParallel
        for key in _CLASS_KEYS:
            obj = m
            for part in key.split(".")[1:-1]:
                obj = getattr(obj, part, None)
            value = getattr(obj, "num_classes", None)
            if isinstance(value, int):
                counts[key] = value
    else:
        for key in _CLASS_KEYS:
            value = OmegaConf.select(cfg, key, default=None)
            if isinstance(value, int) and not isinstance(value, bool):
                counts[key] = value
    return counts


def check_num_classes(cfg: DictConfig, classes: Dict[str, Sequence[str]], model=None) -> int:
    """The model (its config, or the built ``model``), its criterion and decoder, and every dataset
    must agree on the classes.

    Args:
        cfg: the run's config (``model.num_classes`` ...).
        classes: config key of each dataset (``"dataloader.train.dataset"``) -> its class names.
        model: the built model (checks its ``num_classes`` attributes instead of the config's).

    Raises :class:`DataError` when the datasets disagree with each other and :class:`ConfigError`
    naming the exact overrides to add when the model disagrees with them. Returns the count.
    """
    if not classes:
        return 0
    (first_key, first), *rest = classes.items()
    for key, names in rest:
        if list(names) != list(first):
            raise DataError(
                f"The datasets disagree on the classes: {first_key} has {list(first)}, {key} has "
                f"{list(names)}. Train and test data must have the same classes in the same order "
                "(set class_names on both to pin them)."
            )
    k = len(first)
    counts = _model_counts(cfg, model)
    wrong = {key: v for key, v in counts.items() if v != k}
    if not wrong:
        return k
    fixes = ["model.num_classes"] + [key for key in _CLASS_KEYS[1:] if _literal_int(cfg, key) is not None]
    shown = ", ".join(f"{key}={v}" for key, v in counts.items())
    names = ", ".join(first) if k <= 10 else ", ".join(list(first)[:10]) + f", ... ({k - 10} more)"
    raise ConfigError(
        f"The model is set up for a different number of classes than the data: {shown}, but "
        f"{' and '.join(classes)} {'have' if len(classes) > 1 else 'has'} {k} class{'es' if k != 1 else ''} "
        f"({names}). Add {'these overrides' if len(fixes) > 1 else 'this override'}:\n  "
        + " ".join(f"{key}={k}" for key in fixes)
    )
