"""Pascal VOC layout, read with detectron2's VOC loader.

A VOC folder holds ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt`` (one id per line) and
``JPEGImages/<id>.jpg``; the standard VOC2007 / VOC2012 folders and the folders labelImg, CVAT or
Roboflow export are such folders. Records come from ``detectron2.data.datasets.load_voc_instances``
(boxes XYXY_ABS with the 1-based VOC pixel indices shifted to 0-based, "difficult" objects kept);
the file id moves to ``voc_id`` and ``image_id`` becomes the position in the split (COCO
evaluation needs integer ids). On top of it: the class names default to the object names found in
``Annotations/`` (sorted: for VOC2007/2012 these are detectron2's 20 ``CLASS_NAMES`` in their
order), a loading failure names the file and the problem, and images stored with another
extension than ``.jpg`` (``.png``, ``.jpeg``...) are found.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import load_voc_instances

from ...errors import DataError
from ..checks import listing
from .base import claim_name

__all__ = ["load_voc_checked", "register_voc", "voc_class_names", "voc_splits", "diagnose_voc"]

logger = logging.getLogger(__name__)


def _split_file(voc_root: str, split: str) -> str:
    return os.path.join(voc_root, "ImageSets", "Main", f"{split}.txt")


def voc_splits(voc_root: str) -> List[str]:
    """Split names of a VOC folder (``ImageSets/Main/*.txt`` without the per-class lists)."""
    folder = os.path.join(voc_root, "ImageSets", "Main")
    if not os.path.isdir(folder):
        return []
    stems = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt"))
    # VOC also ships "<class>_<split>.txt" lists; hide them when their <split> exists
    return [s for s in stems if not ("_" in s and s.split("_", 1)[1] in stems)]


def _check_folder(voc_root: str, split: str) -> None:
    if not os.path.isdir(voc_root):
        raise DataError(f"VOC folder not found: {voc_root} (voc_root must hold Annotations/, "
                        "ImageSets/Main/ and JPEGImages/).")
    if not os.path.isfile(_split_file(voc_root, split)):
        splits = voc_splits(voc_root)
        raise DataError(
            f"VOC split file {_split_file(voc_root, split)} not found; splits in {voc_root}: "
            f"{splits or 'none (ImageSets/Main/ is missing or empty)'}. Set split to one of them."
        )


def _split_ids(voc_root: str, split: str) -> List[str]:
    with open(_split_file(voc_root, split)) as f:
        return [line.split()[0] for line in f if line.strip()]


def _object_names(tree: ET.ElementTree) -> List[str]:
    return [(obj.findtext("name") or "").strip() for obj in tree.findall("object")]


def voc_class_names(voc_root: str) -> List[str]:
    """Sorted object names found in the folder's ``Annotations/*.xml`` (every split sees the same
    list, so train and test agree on the class ids)."""
    folder = os.path.join(voc_root, "Annotations")
    if not os.path.isdir(folder):
        raise DataError(f"VOC folder {voc_root} has no Annotations/ folder.")
    names, bad = set(), []
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".xml"):
            continue
        try:
            names.update(_object_names(ET.parse(os.path.join(folder, f))))
        except ET.ParseError as e:
            bad.append(f"{os.path.join(folder, f)}: {e}")
    if bad:
        raise DataError(f"{len(bad)} VOC annotation file(s) are not valid XML:{listing(bad)}")
    names.discard("")
    if not names:
        raise DataError(f"No <object><name> in {folder}/*.xml: the VOC folder has no labelled objects.")
    return sorted(names)


def diagnose_voc(voc_root: str, split: str, class_names: Sequence[str]) -> List[str]:
    """Every problem of a split that stops detectron2's VOC loader: missing or invalid XML files,
    a missing <size>, objects without a box or with a class outside ``class_names``."""
    problems = []
    known = set(class_names)
    for fileid in _split_ids(voc_root, split):
        xml = os.path.join(voc_root, "Annotations", fileid + ".xml")
        if not os.path.isfile(xml):
            problems.append(f"{xml}: missing (listed in ImageSets/Main/{split}.txt)")
            continue
        try:
            tree = ET.parse(xml)
        except ET.ParseError as e:
            problems.append(f"{xml}: not valid XML ({e})")
            continue
        for key in ("height", "width"):
            if not (tree.findtext(f"size/{key}") or "").strip().isdigit():
                problems.append(f"{xml}: no integer <size><{key}>")
        for i, obj in enumerate(tree.findall("object")):
            name = (obj.findtext("name") or "").strip()
            if name not in known:
                problems.append(f"{xml}: object {i} has class '{name}', not one of class_names {list(class_names)}")
            box = obj.find("bndbox")
            coords = [box.findtext(k) if box is not None else None for k in ("xmin", "ymin", "xmax", "ymax")]
            try:
                [float(c) for c in coords]
            except (TypeError, ValueError):
                problems.append(f"{xml}: object {i} ('{name}') has no numeric <bndbox> xmin/ymin/xmax/ymax")
    return problems


def _find_images(voc_root: str, dicts: List[Dict[str, Any]]) -> None:
    """detectron2 assumes ``JPEGImages/<id>.jpg``; point records at ``<id>.<ext>`` when only another
    extension exists (one listing of the folder, not a stat per record)."""
    folder = os.path.join(voc_root, "JPEGImages")
    try:
        files = os.listdir(folder)
    except OSError:
        return
    present = set(files)
    by_stem: Dict[str, str] = {}
    for f in sorted(files):
        by_stem.setdefault(os.path.splitext(f)[0], f)
    for d in dicts:
        base = os.path.basename(d["file_name"])
        if base not in present and os.path.splitext(base)[0] in by_stem:
            d["file_name"] = os.path.join(folder, by_stem[os.path.splitext(base)[0]])


def load_voc_checked(voc_root: str, split: str, class_names: Sequence[str]) -> List[Dict[str, Any]]:
    """detectron2 ``load_voc_instances`` with errors naming the file, and other image extensions."""
    _check_folder(voc_root, split)
    ids = _split_ids(voc_root, split)
    if not ids:
        raise DataError(f"{_split_file(voc_root, split)} lists no image ids.")
    if len(ids) == 1:
        # detectron2 reads the list with np.loadtxt, which returns a 0-d array for one line
        raise DataError(f"{_split_file(voc_root, split)} lists a single image; detectron2's VOC loader "
                        "needs at least two.")
    try:
        dicts = load_voc_instances(voc_root, split, list(class_names))
    except (OSError, ValueError, IndexError, AttributeError, TypeError, ET.ParseError) as e:
        problems = diagnose_voc(voc_root, split, class_names)
        if not problems:
            raise
        raise DataError(f"VOC split '{split}' of {voc_root}: {len(problems)} problem(s):{listing(problems)}") from e
    _find_images(voc_root, dicts)
    for i, d in enumerate(dicts, 1):  # COCO evaluation (faster-coco-eval) needs integer image ids
        d["voc_id"], d["image_id"] = d["image_id"], i
    return dicts


def register_voc(name: str, voc_root: str, split: str, class_names: Optional[Sequence[str]] = None) -> str:
    """Register split ``split`` of the VOC folder ``voc_root`` under ``name``; returns ``name``.

    ``class_names``: the classes and their order (contiguous ids); default :func:`voc_class_names`.
    Idempotent for the same folder, split and classes.
    """
    voc_root = os.fspath(voc_root)
    _check_folder(voc_root, split)
    classes = list(class_names) if class_names is not None else voc_class_names(voc_root)
    if not claim_name(name, {"voc_root": voc_root, "split": split, "thing_classes": classes},
                      describe=f"split '{split}' of {voc_root}"):
        return name
    DatasetCatalog.register(name, lambda: load_voc_checked(voc_root, split, classes))
    MetadataCatalog.get(name).set(voc_root=voc_root, split=split, thing_classes=classes, evaluator_type="coco")
    return name
