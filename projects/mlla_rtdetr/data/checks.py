"""The number of classes of a registered dataset (what the engine's class-count check compares)."""
from __future__ import annotations

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import DataError

__all__ = ["dataset_num_classes"]


def dataset_num_classes(name: str) -> int:
    """len(thing_classes) of a registered dataset (loading it if its metadata is not set yet)."""
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_classes"):
        if name not in DatasetCatalog.list():
            raise DataError(f"Dataset '{name}' is not registered. Registered: {', '.join(DatasetCatalog.list())}.")
        DatasetCatalog.get(name)  # detectron2 / our loaders set thing_classes while loading
    classes = getattr(MetadataCatalog.get(name), "thing_classes", None)
    if classes is None:
        raise DataError(f"Dataset '{name}' has no thing_classes in its metadata.")
    return len(classes)
