"""Ultralytics YOLO layout, read directly (no conversion step).

``data.yaml``::

    path: /data/trees          # dataset root; relative: to the yaml's folder (else the working dir);
                               # absent: the yaml's folder
    train: images/train        # a folder of images (searched recursively), a .txt list of image
    val: images/val            # paths, or a list of those; relative to the root
    names: [tree]              # or {0: tree}; class i is line class id i
    # nc: 1                    # optional; must equal the number of names

List files hold one image path per line; relative lines are relative to the list file's folder.
The label file of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the last ``images`` folder
of the path replaced by ``labels``, as ultralytics does); each line is ``class cx cy w h`` in
fractions of the image size (or ``class x1 y1 x2 y2 ...``, a polygon, whose bounding box is used).
An image without a label file, or with an empty one, has no objects (a negative).

Image sizes come from the file headers (EXIF orientation applied, as the images are read); they
are cached under the project's cache folder, keyed by path, modification time and size, so a
second start does not open the images again. An image whose header cannot be read keeps its
record with size 0 and no boxes: training skips it like any undecodable image.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ...errors import DataError
from ..image_io import IMAGE_EXTENSIONS, read_image_size
from ..checks import listing
from .base import claim_name, default_cache_dir

__all__ = ["YoloDataset", "read_yolo_yaml", "yolo_label_file", "parse_yolo_labels", "load_yolo", "register_yolo"]

logger = logging.getLogger(__name__)

_IO_THREADS = 16
_COORD_TOLERANCE = 1e-3  # rounding in exported labels; boxes are clipped to the image anyway


@dataclass
class YoloDataset:
    """A parsed ``data.yaml``: ``root`` folder, ``class_names``, ``splits`` (split -> entries)."""

    yaml_file: str
    root: str
    class_names: List[str]
    splits: Dict[str, List[str]]

    def image_files(self, split: str) -> List[str]:
        """Sorted image paths of ``split`` (as ultralytics lists them)."""
        if split not in self.splits:
            have = [k for k in self.splits]
            raise DataError(f"{self.yaml_file} has no '{split}' entry (it has {have}); set split to one of them.")
        files: List[str] = []
        for entry in self.splits[split]:
            path = entry if os.path.isabs(entry) else os.path.join(self.root, entry)
            if os.path.isdir(path):
                for folder, _, names in os.walk(path):
                    files += [os.path.join(folder, f) for f in names if f.lower().endswith(IMAGE_EXTENSIONS)]
            elif os.path.isfile(path):
                files += _read_list_file(path)
            else:
                raise DataError(
                    f"{self.yaml_file}: {split} entry '{entry}' does not exist ({path}; relative entries "
                    f"are relative to the dataset root {self.root})."
                )
        if not files:
            raise DataError(f"{self.yaml_file}: {split} ({self.splits[split]}) holds no image files "
                            f"({', '.join(IMAGE_EXTENSIONS)}).")
        return sorted(dict.fromkeys(os.path.normpath(f) for f in files))


def _read_list_file(path: str) -> List[str]:
    folder = os.path.dirname(os.path.abspath(path))
    files, skipped = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.lower().endswith(IMAGE_EXTENSIONS):
                skipped.append(line)
                continue
            files.append(line if os.path.isabs(line) else os.path.join(folder, line))
    if skipped:
        logger.warning("%s: %d line(s) are not image paths and were skipped, e.g. %r", path, len(skipped), skipped[0])
    return files


def _class_names(data: Dict[str, Any], yaml_file: str) -> List[str]:
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError(f"{yaml_file}: names keys must be class ids 0..N-1, got {list(names)}") from None
        if keys != list(range(len(keys))):
            raise DataError(f"{yaml_file}: names keys must be the class ids 0..{len(keys) - 1}, got {keys}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names:
        raise DataError(f"{yaml_file}: 'names' must be a non-empty list of class names or a dict "
                        f"{{0: name, 1: name, ...}}, got {names!r}")
    names = [str(n) for n in names]
    if "nc" in data and int(data["nc"]) != len(names):
        raise DataError(f"{yaml_file}: nc is {data['nc']} but names lists {len(names)} classes.")
    return names


def read_yolo_yaml(yaml_file: str) -> YoloDataset:
    """Parse and validate an ultralytics ``data.yaml``."""
    yaml_file = os.fspath(yaml_file)
    if not os.path.isfile(yaml_file):
        raise DataError(f"YOLO data file not found: {yaml_file}")
    try:
        with open(yaml_file) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise DataError(f"{yaml_file} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{yaml_file}: expected a mapping with train/val/names, got {type(data).__name__}")
    yaml_dir = os.path.dirname(os.path.abspath(yaml_file))
    root = yaml_dir
    if data.get("path"):
        path = os.path.expanduser(str(data["path"]))
        candidates = [path] if os.path.isabs(path) else [os.path.join(yaml_dir, path), os.path.abspath(path)]
        found = [c for c in candidates if os.path.isdir(c)]
        if not found:
            raise DataError(f"{yaml_file}: dataset root path '{data['path']}' not found (looked at {candidates}).")
        root = os.path.normpath(found[0])
    splits = {}
    for key in ("train", "val", "test"):
        value = data.get(key)
        if value in (None, ""):
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) for e in entries):
            raise DataError(f"{yaml_file}: {key} must be a path or a list of paths, got {value!r}")
        splits[key] = [os.path.expanduser(e) for e in entries]
    if not splits:
        raise DataError(f"{yaml_file}: no train/val/test entry.")
    return YoloDataset(yaml_file, root, _class_names(data, yaml_file), splits)


def yolo_label_file(image_file: str) -> str:
    """``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (ultralytics' ``img2label_paths``)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(image_file.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def parse_yolo_labels(text: str, num_classes: int, where: str) -> Tuple[np.ndarray, List[str], int]:
    """Label file text -> ((N, 5) float64 ``class cx cy w h`` rows, problems, duplicates removed).

    Polygon lines (``class x1 y1 x2 y2 ...``) become their bounding box. ``problems`` name the line;
    a file with problems contributes no rows.
    """
    rows, problems = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            problems.append(f"{where}:{lineno}: not numbers: {line.strip()!r}")
            continue
        cls = values[0]
        if not (cls.is_integer() and 0 <= cls < num_classes):
            problems.append(f"{where}:{lineno}: class {parts[0]} is not a class id of data.yaml's names "
                            f"(0..{num_classes - 1})")
            continue
        coords = values[1:]
        if len(coords) == 4:
            cx, cy, w, h = coords
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            xs, ys = coords[0::2], coords[1::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            problems.append(f"{where}:{lineno}: expected 'class cx cy w h' (or a polygon), got {len(parts)} values")
            continue
        if not all(-_COORD_TOLERANCE <= v <= 1 + _COORD_TOLERANCE for v in coords):
            problems.append(f"{where}:{lineno}: coordinates {coords[:4]} are not fractions of the image size "
                            "(YOLO labels are normalized to [0, 1])")
            continue
        rows.append((cls, cx, cy, w, h))
    if problems:
        return np.zeros((0, 5)), problems, 0
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    unique = np.unique(arr, axis=0, return_index=True)[1] if len(arr) else np.zeros(0, dtype=np.int64)
    return arr[np.sort(unique)], [], len(arr) - len(unique)


def _cache_file(yaml_file: str, split: str) -> str:
    key = hashlib.sha1(f"{os.path.abspath(yaml_file)}\0{split}".encode()).hexdigest()[:16]
    return os.path.join(str(default_cache_dir()), "yolo_sizes", f"{key}.json")


def _read_cache(path: str) -> Dict[str, list]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_cache(path: str, sizes: Dict[str, list]) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(sizes, f)
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache folder only costs the header reads next time
        logger.debug("Cannot write the image size cache %s: %s", path, e)


def _image_sizes(files: Sequence[str], cache_path: str) -> Tuple[List[Optional[Tuple[int, int]]], List[str]]:
    """(height, width) per file (None: header unreadable) and the files that do not exist."""
    cache = _read_cache(cache_path)

    def one(path):
        try:
            st = os.stat(path)
        except OSError:
            return None, None, False
        stamp = [st.st_mtime_ns, st.st_size]
        hit = cache.get(path)
        if hit is not None and hit[:2] == stamp:
            return stamp, (None if hit[2] is None else tuple(hit[2])), True
        try:
            return stamp, read_image_size(path), False
        except OSError:
            return stamp, None, False

    with ThreadPool(_IO_THREADS) as pool:
        results = pool.map(one, files, chunksize=256)
    missing = [f for f, (stamp, _, _) in zip(files, results) if stamp is None]
    entries = {f: stamp + [None if size is None else list(size)]
               for f, (stamp, size, _) in zip(files, results) if stamp is not None}
    if len(entries) != len(cache) or not all(hit for stamp, _, hit in results if stamp is not None):
        _write_cache(cache_path, entries)
    return [size for _, size, _ in results], missing


def _read_labels(files: Sequence[str]) -> List[Optional[str]]:
    def one(path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    with ThreadPool(_IO_THREADS) as pool:
        return pool.map(one, files, chunksize=256)


def load_yolo(yaml_file: str, split: str) -> List[Dict[str, Any]]:
    """Dataset dicts of ``split`` (``image_id`` = position in the sorted image list + 1)."""
    ds = read_yolo_yaml(yaml_file)
    images = ds.image_files(split)
    sizes, missing = _image_sizes(images, _cache_file(yaml_file, split))
    if missing:
        raise DataError(f"{yaml_file} ({split}): {len(missing)} of {len(images)} listed images do not exist:"
                        f"{listing(missing)}")
    label_files = [yolo_label_file(f) for f in images]
    texts = _read_labels(label_files)
    dicts, problems = [], []
    no_label = duplicates = unreadable = 0
    k = len(ds.class_names)
    for i, (image, label, text, size) in enumerate(zip(images, label_files, texts, sizes)):
        rows = np.zeros((0, 5))
        if text is None:
            no_label += 1
        else:
            rows, bad, dup = parse_yolo_labels(text, k, label)
            problems += bad
            duplicates += dup
        h, w = size if size is not None else (0, 0)
        if size is None:
            unreadable += 1
            rows = rows[:0]
        annotations = [
            {
                "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": int(cls),
                "iscrowd": 0,
            }
            for cls, cx, cy, bw, bh in rows.tolist()
        ]
        dicts.append({"file_name": image, "image_id": i + 1, "height": h, "width": w, "annotations": annotations})
    if problems:
        raise DataError(f"{yaml_file} ({split}): {len(problems)} label problem(s):{listing(problems)}")
    notes = []
    if no_label:
        notes.append(f"{no_label} images without a label file (negatives)")
    if duplicates:
        notes.append(f"{duplicates} duplicate label rows removed")
    if unreadable:
        notes.append(f"{unreadable} images whose header cannot be read (skipped when read)")
    if notes:
        logger.info("%s (%s): %s", yaml_file, split, "; ".join(notes))
    return dicts


def register_yolo(name: str, yolo_yaml: str, split: str) -> str:
    """Register split ``split`` (train / val / test) of an ultralytics ``data.yaml`` under ``name``.

    The class names are set from the yaml now (cheap); the images are listed when loading.
    Idempotent for the same yaml and split.
    """
    yolo_yaml = os.fspath(yolo_yaml)
    ds = read_yolo_yaml(yolo_yaml)
    if split not in ds.splits:
        raise DataError(f"{yolo_yaml} has no '{split}' entry (it has {list(ds.splits)}); set split to one of them.")
    if not claim_name(name, {"yolo_yaml": yolo_yaml, "split": split}, describe=f"split '{split}' of {yolo_yaml}"):
        return name
    DatasetCatalog.register(name, lambda: load_yolo(yolo_yaml, split))
    MetadataCatalog.get(name).set(yolo_yaml=yolo_yaml, split=split, thing_classes=ds.class_names,
                                  evaluator_type="coco")
    return name
