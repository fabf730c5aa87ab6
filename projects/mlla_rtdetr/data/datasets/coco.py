"""COCO-format datasets: checked json loading, registration under any name, and the
``get_dataset_dicts`` entry point of the data configs (with box sanitizing + counts)."""
from __future__ import annotations

import difflib
import json
import logging
import os
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

__all__ = [
    "load_coco_json_checked",
    "register_coco_format",
    "get_dataset_dicts",
    "sanitize_dataset_dicts",
    "ensure_dataset_files",
    "register_materializer",
]

logger = logging.getLogger(__name__)

# name -> callable making sure the dataset's files (json, images) exist, e.g. generating the
# embedded synthetic dataset. Evaluators call it before reading the json.
_MATERIALIZERS: Dict[str, Callable[[], None]] = {}


def register_materializer(name: str, fn: Callable[[], None]) -> None:
    _MATERIALIZERS[name] = fn


def ensure_dataset_files(name: str) -> None:
    """Create the files of a generated dataset if it has not been done yet (no-op otherwise)."""
    fn = _MATERIALIZERS.get(name)
    if fn is not None:
        fn()


def _read_json(json_file: str) -> Dict[str, Any]:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file not found: {json_file}")
    with open(json_file, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as e:
        raise ValueError(f"COCO annotation file {json_file} is not UTF-8 text: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(
            f"COCO annotation file {json_file} is not valid JSON: {e.msg} at line {e.lineno} "
            f"column {e.colno} (char {e.pos})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"COCO annotation file {json_file}: top level must be an object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"COCO annotation file {json_file}: missing list '{key}' at top level")
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
            raise ValueError(f"{json_file}: categories[{i}] needs 'id' and 'name', got {c!r}")
    cat_ids = [int(c["id"]) for c in categories]
    dup = [k for k, n in Counter(cat_ids).items() if n > 1]
    if dup:
        raise ValueError(f"{json_file}: duplicate category ids {sorted(dup)}")
    if not categories:
        raise ValueError(f"{json_file}: 'categories' is empty")
    categories = sorted(categories, key=lambda c: int(c["id"]))
    id_map = {int(c["id"]): i for i, c in enumerate(categories)}
    thing_classes = [str(c["name"]) for c in categories]

    records: Dict[Any, Dict[str, Any]] = {}
    order: List[Any] = []
    for i, img in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(img, dict) or k not in img]
        if missing:
            raise ValueError(f"{json_file}: images[{i}] lacks {missing}: {img!r}")
        if img["id"] in records:
            raise ValueError(f"{json_file}: images[{i}] repeats image id {img['id']!r}")
        records[img["id"]] = {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": int(img["height"]),
            "width": int(img["width"]),
            "image_id": img["id"],
            "annotations": [],
        }
        order.append(img["id"])

    for i, ann in enumerate(data["annotations"]):
        where = f"{json_file}: annotations[{i}] (id={ann.get('id') if isinstance(ann, dict) else None!r})"
        if not isinstance(ann, dict):
            raise ValueError(f"{where} is not an object")
        if ann.get("image_id") not in records:
            raise ValueError(f"{where} refers to image_id {ann.get('image_id')!r} that is not in 'images'")
        try:
            cat = id_map[int(ann.get("category_id"))]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{where} has category_id {ann.get('category_id')!r}, not one of {sorted(id_map)}"
            ) from None
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise ValueError(f"{where} needs 'bbox' = [x, y, w, h] numbers, got {bbox!r}")
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
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if getattr(meta, "json_file", None) == json_file and getattr(meta, "image_root", None) == image_root:
            return name
        raise ValueError(
            f"Dataset name '{name}' is already registered (json_file={getattr(meta, 'json_file', None)}, "
            f"image_root={getattr(meta, 'image_root', None)}); register {json_file} under another name."
        )
    DatasetCatalog.register(name, lambda: load_coco_json_checked(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **(metadata or {})
    )
    return name


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
    logger.info("Dataset %s: %d images, %d boxes%s", name or "?", len(out), n_boxes, fixes)
    return (out, dict(stats)) if return_stats else out


def _check_images_exist(dicts: List[Dict[str, Any]], name: str) -> None:
    missing = [r for r in dicts if not os.path.isfile(r["file_name"])]
    if missing:
        shown = "; ".join(f"{r['file_name']} (image_id={r.get('image_id')!r})" for r in missing[:5])
        raise FileNotFoundError(
            f"Dataset {name}: {len(missing)} of {len(dicts)} images are missing, e.g. {shown}"
        )


def _known_dataset_or_raise(name: str) -> None:
    if name in DatasetCatalog.list():
        return
    close = difflib.get_close_matches(name, DatasetCatalog.list(), n=5)
    raise KeyError(
        f"Dataset '{name}' is not registered. Close names: {close}. Give its json_file and "
        "image_root (dataloader.*.dataset.json_file=... image_root=...) to register a COCO-format "
        "dataset under this name."
    )


def get_dataset_dicts(
    names: Union[str, Sequence[str]],
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    filter_empty: bool = False,
    check_images: bool = False,
) -> List[Dict[str, Any]]:
    """Dataset dicts of one or more registered datasets, sanitized (see sanitize_dataset_dicts).

    Args:
        names: registered name(s), e.g. "coco_2017_train", "synthetic_shapes_train".
        json_file, image_root: register ``names`` (a single name) as a COCO-format dataset first.
        filter_empty: drop images without (non-crowd) boxes. Default keeps them as negatives.
        check_images: fail now, listing the records whose image file is missing.
    """
    if json_file is not None or image_root is not None:
        if json_file is None or image_root is None:
            raise ValueError("Give both json_file and image_root to register a COCO-format dataset.")
        if not isinstance(names, str):
            raise ValueError(f"json_file/image_root register one dataset: names must be a string, got {names!r}")
        register_coco_format(names, json_file, image_root)
    if isinstance(names, str):
        names = [names]
    names = [str(n) for n in names]
    if not names:
        raise ValueError("get_dataset_dicts needs at least one dataset name")

    all_dicts: List[Dict[str, Any]] = []
    for name in names:
        _known_dataset_or_raise(name)
        ensure_dataset_files(name)
        meta = MetadataCatalog.get(name)
        jf = getattr(meta, "json_file", None)
        if jf is not None and not os.path.isfile(jf):
            raise FileNotFoundError(
                f"Dataset '{name}' reads {jf}, which does not exist. For detectron2's builtin COCO "
                "names set DETECTRON2_DATASETS to the folder holding coco/annotations and coco/train2017 "
                "...; for other data give json_file and image_root."
            )
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"Dataset '{name}' is empty")
        dicts = sanitize_dataset_dicts(dicts, name)
        if filter_empty:
            before = len(dicts)
            dicts = [d for d in dicts if d["annotations"]]
            logger.info("Dataset %s: removed %d images without boxes", name, before - len(dicts))
        if check_images:
            _check_images_exist(dicts, name)
        all_dicts.extend(dicts)

    if len(names) > 1:
        classes = [tuple(getattr(MetadataCatalog.get(n), "thing_classes", ())) for n in names]
        if len(set(classes)) > 1:
            raise ValueError(f"Datasets {names} have different thing_classes: {classes}")
    return all_dicts
