"""What every dataset source shares: registration under a name that is checked against earlier
registrations, lazily generated files, and the error for a name nobody registered."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...errors import ConfigError, DataError

__all__ = [
    "default_cache_dir",
    "register_materializer",
    "ensure_dataset_files",
    "known_dataset_or_raise",
    "registered_source",
    "claim_name",
]

def default_cache_dir() -> Path:
    """Where generated data and caches go: ``$MLLA_RTDETR_CACHE``, default ``~/.cache/mlla_rtdetr``."""
    return Path(os.environ.get("MLLA_RTDETR_CACHE") or Path.home() / ".cache" / "mlla_rtdetr")


# name -> callable making sure the dataset's files (json, images) exist, e.g. generating the
# embedded synthetic dataset. Loaders and evaluators call it before reading the files.
_MATERIALIZERS: Dict[str, Callable[[], None]] = {}


def register_materializer(name: str, fn: Callable[[], None]) -> None:
    _MATERIALIZERS[name] = fn


def ensure_dataset_files(name: str) -> None:
    """Create the files of a generated dataset if it has not been done yet (no-op otherwise)."""
    fn = _MATERIALIZERS.get(name)
    if fn is not None:
        fn()


def known_dataset_or_raise(name: str) -> None:
    if name in DatasetCatalog.list():
        return
    close = difflib.get_close_matches(name, DatasetCatalog.list(), n=5)
    raise DataError(
        f"Dataset '{name}' is not registered{f' (close names: {close})' if close else ''}. Name where "
        "it lives next to `names`: json_file and image_root (COCO json), voc_root and split (Pascal "
        "VOC folder) or yolo_yaml and split (ultralytics data.yaml), e.g. "
        "dataloader.train.dataset.json_file=train.json dataloader.train.dataset.image_root=images/"
    )


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return os.path.abspath(a) == os.path.abspath(b)
    return a == b


def registered_source(name: str, keys) -> Dict[str, object]:
    """The metadata fields ``keys`` of dataset ``name`` (None where unset)."""
    meta = MetadataCatalog.get(name)
    return {k: getattr(meta, k, None) for k in keys}


def claim_name(name: str, source: Mapping[str, object], describe: Optional[str] = None) -> bool:
    """Whether ``name`` still has to be registered for ``source`` (metadata field -> value).

    Returns False when it is already registered for the same source (registration is
    idempotent, so a config may register by LazyCall); raises :class:`ConfigError` when the
    name is taken by another dataset.
    """
    if name not in DatasetCatalog.list():
        return True
    old = registered_source(name, source.keys())
    if all(_same(old[k], v) for k, v in source.items()):
        return False
    shown_old = ", ".join(f"{k}={v}" for k, v in old.items() if v is not None) or "a Python registration"
    raise ConfigError(
        f"Dataset name '{name}' is already registered ({shown_old}); register "
        f"{describe or ', '.join(f'{k}={v}' for k, v in source.items())} under another name "
        "(dataloader.*.dataset.names=...)."
    )
