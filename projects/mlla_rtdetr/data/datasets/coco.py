"""COCO-format datasets: checked json loading and registration under any name."""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Any, Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...errors import DataError
from ..checks import listing
from .base import claim_name

__all__ = ["load_coco_json_checked", "register_coco_format"]

logger = logging.getLogger(__name__)


def _read_json(json_file: str) -> Dict[str, Any]:
    if not os.path.isfile(json_file):
        raise DataError(f"COCO annotation file not found: {json_file}")
    with open(json_file, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as e:
        raise DataError(f"COCO annotation file {json_file} is not UTF-8 text: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"COCO annotation file {json_file} is not valid JSON: {e.msg} at line {e.lineno} "
            f"column {e.colno} (char {e.pos})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"COCO annotation file {json_file}: top level must be an object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"COCO annotation file {json_file}: missing list '{key}' at top level")
    return data


def load_coco_json_checked(
    json_file: str, image_root: str, dataset_name: Optional[str] = None
) -> List[Dict[str, Any]]:
    """COCO instances json -> detectron2 dataset dicts, with errors that name the file and record.

    Category ids may be any distinct ints: they are mapped to contiguous 0..K-1 in id order and
    the mapping is stored in the metadata of ``dataset_name`` (thing_classes,
    thing_dataset_id_to_contiguous_id) as detectron2's ``load_coco_json`` does.
    """
    data = _read_json(json_file)

    categories = data["categories"]
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DataError(f"{json_file}: categories[{i}] needs 'id' and 'name', got {c!r}")
    cat_ids = [int(c["id"]) for c in categories]
    dup = [k for k, n in Counter(cat_ids).items() if n > 1]
    if dup:
        raise DataError(f"{json_file}: duplicate category ids {sorted(dup)}")
    if not categories:
        raise DataError(f"{json_file}: 'categories' is empty")
    categories = sorted(categories, key=lambda c: int(c["id"]))
    id_map = {int(c["id"]): i for i, c in enumerate(categories)}
    thing_classes = [str(c["name"]) for c in categories]

    records: Dict[Any, Dict[str, Any]] = {}
    order: List[Any] = []
    for i, img in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(img, dict) or k not in img]
        if missing:
            raise DataError(f"{json_file}: images[{i}] lacks {missing}: {img!r}")
        if img["id"] in records:
            raise DataError(f"{json_file}: images[{i}] repeats image id {img['id']!r}")
        records[img["id"]] = {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": int(img["height"]),
            "width": int(img["width"]),
            "image_id": img["id"],
            "annotations": [],
        }
        order.append(img["id"])

    unknown: List[str] = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{json_file}: annotations[{i}] (id={ann.get('id') if isinstance(ann, dict) else None!r})"
        if not isinstance(ann, dict):
            raise DataError(f"{where} is not an object")
        if ann.get("image_id") not in records:
            raise DataError(f"{where} refers to image_id {ann.get('image_id')!r} that is not in 'images'")
        try:
            cat = id_map[int(ann.get("category_id"))]
        except (KeyError, TypeError, ValueError):
            unknown.append(f"annotations[{i}] (id={ann.get('id')!r}, image_id={ann['image_id']!r}) has "
                           f"category_id {ann.get('category_id')!r}")
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise DataError(f"{where} needs 'bbox' = [x, y, w, h] numbers, got {bbox!r}")
        if ann.get("ignore", 0):
            continue
        records[ann["image_id"]]["annotations"].append(
            {
                "bbox": [float(v) for v in bbox],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": cat,
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
        )

    if unknown:
        known = ", ".join(f"{c['id']} ({c['name']})" for c in categories)
        raise DataError(
            f"{json_file}: {len(unknown)} annotation(s) use a category id that is not in 'categories' "
            f"(known ids: {known}):{listing(unknown)}\n"
            "Add the category to 'categories' or fix the annotations' category_id."
        )
    if dataset_name is not None:
        meta = MetadataCatalog.get(dataset_name)
        meta.set(thing_classes=thing_classes, thing_dataset_id_to_contiguous_id=id_map)
    return [records[k] for k in order]


def register_coco_format(
    name: str, json_file: str, image_root: str, metadata: Optional[Dict[str, Any]] = None
) -> str:
    """Register a COCO-format dataset (json + image folder) under ``name``; returns ``name``.

    Idempotent for the same paths, so it can be a LazyCall inside configs
    (``names=L(register_coco_format)(name=..., json_file=..., image_root=...)``).
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    if not claim_name(name, {"json_file": json_file, "image_root": image_root}):
        return name
    DatasetCatalog.register(name, lambda: load_coco_json_checked(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **(metadata or {})
    )
    return name
