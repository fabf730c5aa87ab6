"""One entry point for every dataset source: ``get_dataset_dicts``, the dataset of the data configs.

A config names a dataset by ``names`` and, unless the name is registered already (detectron2's
builtin COCO / VOC names, the embedded synthetic dataset, a Python registration), by where it lives:

=================================  ======================================================
``json_file`` + ``image_root``     COCO instances json and the folder its file_names are in
``voc_root`` + ``split``           Pascal VOC folder and its ``ImageSets/Main/<split>.txt``
``yolo_yaml`` + ``split``          ultralytics ``data.yaml`` and its train / val / test entry
=================================  ======================================================

The class names come from the dataset; ``class_names`` (optional) pins them: VOC reads those
classes in that order, COCO and YOLO must have exactly them. After a run started, the run's
``config.yaml`` holds the class names, so a re-run, ``--resume`` or ``tools/predict.py`` with it
knows them without the data and fails if the data's classes changed.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...errors import ConfigError, DataError
from ..checks import check_image_files
from .base import ensure_dataset_files, known_dataset_or_raise
from .coco import register_coco_format
from .voc import register_voc
from .yolo import register_yolo

__all__ = [
    "SOURCE_FIELDS",
    "dataset_format",
    "register_dataset",
    "dataset_classes",
    "get_dataset_dicts",
    "sanitize_dataset_dicts",
    "hold_dataset_dicts",
    "release_held_dicts",
    "load_summary",
]

logger = logging.getLogger(__name__)

SOURCE_FIELDS = ("json_file", "image_root", "voc_root", "yolo_yaml")


def dataset_format(
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    voc_root: Optional[str] = None,
    yolo_yaml: Optional[str] = None,
) -> Optional[str]:
    """"coco", "voc", "yolo" from the source fields that are set, or None (a registered name)."""
    given = [k for k, v in zip(SOURCE_FIELDS, (json_file, image_root, voc_root, yolo_yaml)) if v not in (None, "")]
    if not given:
        return None
    if set(given) <= {"json_file", "image_root"}:
        if len(given) == 1:
            missing = "image_root" if given == ["json_file"] else "json_file"
            raise ConfigError(f"A COCO-format dataset needs json_file and image_root; {missing} is not set.")
        return "coco"
    if given == ["voc_root"]:
        return "voc"
    if given == ["yolo_yaml"]:
        return "yolo"
    raise ConfigError(
        f"Set one dataset source, not {given}: json_file + image_root (COCO json), voc_root (Pascal "
        "VOC folder) or yolo_yaml (ultralytics data.yaml)."
    )


def _as_class_list(class_names) -> Optional[List[str]]:
    if class_names is None:
        return None
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise ConfigError(f"class_names must be a list of names, e.g. class_names=[cat,dog]; got {class_names!r}")
    return [str(c) for c in class_names]


def register_dataset(
    name: str,
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    voc_root: Optional[str] = None,
    yolo_yaml: Optional[str] = None,
    split: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
) -> str:
    """Register ``name`` from its source (see the module docstring); idempotent; returns ``name``.

    Without a source, ``name`` must be registered already.
    """
    fmt = dataset_format(json_file, image_root, voc_root, yolo_yaml)
    if fmt is None:
        known_dataset_or_raise(name)
        return name
    if not isinstance(name, str):
        raise ConfigError(f"A dataset source registers one dataset: names must be one name, got {name!r}.")
    if fmt in ("voc", "yolo") and not split:
        hint = "train, val, trainval or test: a file of ImageSets/Main" if fmt == "voc" else "train, val or test"
        raise ConfigError(f"A {fmt.upper()} dataset needs split ({hint}).")
    if fmt == "coco":
        return register_coco_format(name, json_file, image_root)
    if fmt == "voc":
        return register_voc(name, voc_root, split, _as_class_list(class_names))
    return register_yolo(name, yolo_yaml, split)


def dataset_classes(name: str) -> List[str]:
    """``thing_classes`` of a registered dataset (loading it if its metadata does not have them yet)."""
    known_dataset_or_raise(name)
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_classes"):
        ensure_dataset_files(name)
        DatasetCatalog.get(name)  # detectron2's and our loaders set thing_classes while loading
    classes = getattr(MetadataCatalog.get(name), "thing_classes", None)
    if classes is None:
        raise DataError(
            f"Dataset '{name}' has no class names: set MetadataCatalog.get('{name}').thing_classes "
            "where it is registered."
        )
    return list(classes)


# ----------------------------------------------------------------------------- hand-over
# Dataset dicts loaded and checked before training (mlla_rtdetr.data.prepare_datasets), waiting
# for the loader built from the same config to take them, so that nothing is read twice.
_HELD: Dict[Tuple, List[Dict[str, Any]]] = {}


def _spec_key(names, json_file, image_root, voc_root, yolo_yaml, split, filter_empty) -> Tuple:
    names = (names,) if isinstance(names, str) else tuple(str(n) for n in names)
    return (names, json_file, image_root, voc_root, yolo_yaml, split, bool(filter_empty))


def hold_dataset_dicts(dicts: List[Dict[str, Any]], **spec) -> None:
    """Keep ``dicts`` for the next ``get_dataset_dicts`` call with the same dataset ``spec``."""
    _HELD[_spec_key(**spec)] = dicts


def release_held_dicts() -> None:
    """Drop the held dicts (before spawning workers that load their own)."""
    _HELD.clear()


# ----------------------------------------------------------------------------- entry point
def get_dataset_dicts(
    names: Union[str, Sequence[str]],
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    voc_root: Optional[str] = None,
    yolo_yaml: Optional[str] = None,
    split: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    filter_empty: bool = False,
    check_images: bool = True,
) -> List[Dict[str, Any]]:
    """Dataset dicts of one or more datasets, sanitized (see :func:`sanitize_dataset_dicts`).

    Args:
        names: registered name(s) (e.g. "coco_2017_train"), or the name to register the source under.
        json_file, image_root / voc_root / yolo_yaml, split, class_names: the dataset's source
            (module docstring); ``split`` selects the VOC split file or the data.yaml entry.
        filter_empty: drop images without (non-crowd) boxes. Default keeps them as negatives.
        check_images: stat every image file (in parallel) and raise :class:`DataError` listing
            the missing ones.
    """
    key = _spec_key(names, json_file, image_root, voc_root, yolo_yaml, split, filter_empty)
    if key in _HELD:
        return _HELD.pop(key)
    class_names = _as_class_list(class_names)
    if dataset_format(json_file, image_root, voc_root, yolo_yaml) is not None:
        register_dataset(names, json_file, image_root, voc_root, yolo_yaml, split, class_names)
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if not names:
        raise ConfigError("get_dataset_dicts needs at least one dataset name")

    all_dicts: List[Dict[str, Any]] = []
    for name in names:
        known_dataset_or_raise(name)
        ensure_dataset_files(name)
        _check_builtin_files(name)
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise DataError(f"Dataset '{name}' is empty")
        if class_names is not None and dataset_classes(name) != class_names:
            raise DataError(
                f"Dataset '{name}' has the classes {dataset_classes(name)}, but class_names is "
                f"{class_names}. Remove class_names to take the dataset's, or fix the dataset."
            )
        dicts = sanitize_dataset_dicts(dicts, name)
        if filter_empty:
            before = len(dicts)
            dicts = [d for d in dicts if d["annotations"]]
            logger.info("Dataset %s: removed %d images without boxes", name, before - len(dicts))
        if check_images:
            check_image_files(dicts, name)
        all_dicts.extend(dicts)

    if len(names) > 1:
        classes = [dataset_classes(n) for n in names]
        if any(c != classes[0] for c in classes):
            raise DataError(f"Datasets {names} have different classes: {classes}")
    return all_dicts


def _check_builtin_files(name: str) -> None:
    """Files of detectron2's builtin names are looked up under DETECTRON2_DATASETS."""
    meta = MetadataCatalog.get(name)
    jf = getattr(meta, "json_file", None)
    if jf is not None and not os.path.isfile(jf):
        raise DataError(
            f"Dataset '{name}' reads {jf}, which does not exist. For detectron2's builtin COCO names set "
            "DETECTRON2_DATASETS to the folder holding coco/annotations, coco/train2017 ...; for other "
            "data give json_file and image_root."
        )
    dirname, split = getattr(meta, "dirname", None), getattr(meta, "split", None)
    if dirname is not None and split is not None:
        split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise DataError(
                f"Dataset '{name}' reads {split_file}, which does not exist. For detectron2's builtin "
                "VOC names set DETECTRON2_DATASETS to the folder holding VOC2007/ and VOC2012/; for "
                "other data give voc_root and split."
            )


def sanitize_dataset_dicts(dicts: List[Dict[str, Any]], name: str = "", return_stats: bool = False):
    """Clip boxes to their image, drop zero-area / outside boxes, exclude crowd boxes.

    Returns new dicts (annotations as XYWH_ABS), plus the counts of each fix when
    ``return_stats``, and logs what was changed. Images left with no box are kept (negatives
    for training).
    """
    stats = Counter()
    out = []
    for rec in dicts:
        h, w = rec.get("height"), rec.get("width")
        anns = []
        for ann in rec.get("annotations", []):
            if ann.get("iscrowd", 0):
                stats["crowd boxes excluded"] += 1
                continue
            x0, y0, x1, y1 = BoxMode.convert(list(ann["bbox"]), ann.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
            if h is not None and w is not None:
                cx0, cy0 = min(max(x0, 0.0), w), min(max(y0, 0.0), h)
                cx1, cy1 = min(max(x1, 0.0), w), min(max(y1, 0.0), h)
            else:
                cx0, cy0, cx1, cy1 = x0, y0, x1, y1
            if not (cx1 > cx0 and cy1 > cy0):
                stats["zero-area or outside-image boxes dropped"] += 1
                continue
            if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
                stats["boxes clipped to the image"] += 1
            ann = dict(ann, bbox=[cx0, cy0, cx1 - cx0, cy1 - cy0], bbox_mode=BoxMode.XYWH_ABS)
            anns.append(ann)
        if not anns:
            stats["images without boxes (kept)"] += 1
        out.append(dict(rec, annotations=anns))
    n_boxes = sum(len(r["annotations"]) for r in out)
    fixes = "".join(f", {n} {k}" for k, n in sorted(stats.items()))
    summary = f"{len(out)} images, {n_boxes} boxes{fixes}"
    if name:
        _LOAD_SUMMARY[name] = summary
    logger.info("Dataset %s: %s", name or "?", summary)
    return (out, dict(stats)) if return_stats else out


_LOAD_SUMMARY: Dict[str, str] = {}


def load_summary(name: str) -> Optional[str]:
    """"N images, M boxes, <fixes>" of the last load of ``name`` in this process."""
    return _LOAD_SUMMARY.get(name)
