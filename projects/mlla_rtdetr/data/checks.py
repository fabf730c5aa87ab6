"""Consistency checks between the model and the data."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["check_num_classes", "dataset_num_classes"]


def dataset_num_classes(name: str) -> int:
    """len(thing_classes) of a registered dataset (loading it if its metadata is not set yet)."""
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_classes"):
        if name not in DatasetCatalog.list():
            raise KeyError(f"Dataset '{name}' is not registered")
        DatasetCatalog.get(name)  # detectron2 / our loaders set thing_classes while loading
    classes = getattr(MetadataCatalog.get(name), "thing_classes", None)
    if classes is None:
        raise ValueError(f"Dataset '{name}' has no thing_classes in its metadata")
    return len(classes)


def check_num_classes(
    model_num_classes: int,
    criterion_num_classes: Optional[int],
    dataset_names: Union[str, Sequence[str]],
) -> int:
    """Raise ValueError unless model, criterion and every dataset agree on the class count.

    Returns the agreed number of classes.
    """
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    counts = {f"model.num_classes": int(model_num_classes)}
    if criterion_num_classes is not None:
        counts["criterion.num_classes"] = int(criterion_num_classes)
    for name in dataset_names:
        counts[f"dataset '{name}' (len(thing_classes))"] = dataset_num_classes(name)
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise ValueError(
            f"Number of classes disagree: {detail}. Set model.num_classes and "
            "model.criterion.num_classes to the dataset's number of classes."
        )
    return int(model_num_classes)
