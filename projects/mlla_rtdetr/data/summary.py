"""What is in a dataset and what is wrong with it (``tools/dataset_summary.py``): images, boxes per
class, box and image sizes, images without boxes, and every file problem training would meet."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from typing import Any, Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog

from .checks import listing, stat_image_files
from .datasets.base import ensure_dataset_files, known_dataset_or_raise
from .datasets.catalog import dataset_classes, sanitize_dataset_dicts
from .image_io import read_image_pil, read_image_size

__all__ = ["DatasetSummary", "summarize_dataset", "BOX_SIZE_BINS"]

BOX_SIZE_BINS = (0, 8, 16, 32, 64, 128, 256, 512)
"""Lower edges of the box size histogram: sqrt(box area) in pixels of the original image
(COCO's small / medium / large split at 32 and 96)."""

_THREADS = 16


@dataclass
class DatasetSummary:
    name: str
    class_names: List[str]
    num_images: int
    boxes_per_class: List[int]
    images_per_class: List[int]
    box_sizes: List[int]  # histogram over BOX_SIZE_BINS
    coco_areas: Dict[str, int]  # small / medium / large
    image_sizes: List[Tuple[Tuple[int, int], int]]  # ((width, height), images), most common first
    images_without_boxes: List[str]
    annotation_fixes: Dict[str, int]  # what loading clipped / dropped (see sanitize_dataset_dicts)
    problems: Dict[str, List[str]] = field(default_factory=dict)  # kind -> messages naming the file

    @property
    def num_problems(self) -> int:
        return sum(len(v) for v in self.problems.values())

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["image_sizes"] = [{"width": w, "height": h, "images": n} for (w, h), n in self.image_sizes]
        d["box_size_bins"] = list(BOX_SIZE_BINS)
        d["num_boxes"] = sum(self.boxes_per_class)
        return d

    def format(self) -> str:
        k = len(self.class_names)
        lines = [f"Dataset {self.name}: {self.num_images} images, {sum(self.boxes_per_class)} boxes, "
                 f"{k} class{'es' if k != 1 else ''}"]
        lines.append("")
        width = max([len("class")] + [len(c) for c in self.class_names])
        lines.append(f"  {'id':>3}  {'class':<{width}}  {'boxes':>8}  {'images':>7}")
        for i, (c, nb, ni) in enumerate(zip(self.class_names, self.boxes_per_class, self.images_per_class)):
            lines.append(f"  {i:>3}  {c:<{width}}  {nb:>8}  {ni:>7}")
        lines.append("")
        total = max(1, sum(self.box_sizes))
        lines.append("  box size (sqrt of area, px)   boxes")
        for lo, hi, n in zip(BOX_SIZE_BINS, list(BOX_SIZE_BINS[1:]) + [None], self.box_sizes):
            label = f"{lo}-{hi}" if hi is not None else f">={lo}"
            lines.append(f"  {label:>9}  {n:>8}  {'#' * int(round(40 * n / total))}".rstrip())
        lines.append("  COCO areas: " + ", ".join(f"{k} {v}" for k, v in self.coco_areas.items()))
        lines.append("")
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.image_sizes[:5])
        more = f", ... {len(self.image_sizes) - 5} more sizes" if len(self.image_sizes) > 5 else ""
        lines.append(f"  image sizes (w x h): {sizes}{more}")
        lines.append(f"  images without boxes: {len(self.images_without_boxes)}"
                     + (f" (e.g. {self.images_without_boxes[0]})" if self.images_without_boxes else ""))
        if self.annotation_fixes:
            lines.append("  annotation fixes at load: "
                         + ", ".join(f"{n} {k}" for k, n in sorted(self.annotation_fixes.items())))
        lines.append("")
        if not self.problems:
            lines.append("  problems: none")
        for kind, items in self.problems.items():
            lines.append(f"  problem: {len(items)} {kind}:" + listing(items).replace("\n", "\n  "))
        return "\n".join(lines)


def _check_image(record: Dict[str, Any], decode: bool) -> Optional[Tuple[str, str]]:
    """(kind, message) of an image training could not use, else None."""
    path = record["file_name"]
    try:
        if decode:
            w, h = read_image_pil(path).size
        else:
            h, w = read_image_size(path)
    except OSError as e:
        return "images that cannot be decoded", str(e)
    if (record.get("height"), record.get("width")) != (h, w):
        return ("images whose size differs from their record",
                f"{path}: is {w}x{h} (w x h) but the annotations say {record.get('width')}x{record.get('height')}")
    return None


def summarize_dataset(name: str, decode: bool = False, threads: int = _THREADS) -> DatasetSummary:
    """Summary of the registered dataset ``name``.

    Every image is checked: it exists, is not empty, its header can be read and gives the size of
    its record (``decode``: the whole image is decoded, which also finds truncated files).
    """
    known_dataset_or_raise(name)
    ensure_dataset_files(name)
    dicts, fixes = sanitize_dataset_dicts(DatasetCatalog.get(name), name, return_stats=True)
    fixes.pop("images without boxes (kept)", None)
    classes = dataset_classes(name)
    k = len(classes)
    boxes_per_class, images_per_class = [0] * k, [0] * k
    box_sizes = [0] * len(BOX_SIZE_BINS)
    areas = Counter({"small": 0, "medium": 0, "large": 0})
    without, image_sizes = [], Counter()
    for d in dicts:
        anns = d["annotations"]
        image_sizes[(int(d.get("width", 0)), int(d.get("height", 0)))] += 1
        if not anns:
            without.append(d["file_name"])
        for c in {a["category_id"] for a in anns}:
            images_per_class[c] += 1
        for a in anns:
            boxes_per_class[a["category_id"]] += 1
            side = math.sqrt(a["bbox"][2] * a["bbox"][3])
            box_sizes[max(i for i, lo in enumerate(BOX_SIZE_BINS) if side >= lo)] += 1
            areas["small" if side < 32 else "medium" if side < 96 else "large"] += 1

    problems: Dict[str, List[str]] = {}
    missing, empty = stat_image_files([d["file_name"] for d in dicts])
    if missing:
        problems["image files that do not exist"] = [dicts[i]["file_name"] for i in missing]
    if empty:
        problems["empty image files"] = [dicts[i]["file_name"] for i in empty]
    skip = set(missing) | set(empty)
    present = [d for i, d in enumerate(dicts) if i not in skip]
    with ThreadPool(max(1, threads)) as pool:
        found = pool.map(lambda d: _check_image(d, decode), present, chunksize=64)
    for result in found:
        if result is not None:
            problems.setdefault(result[0], []).append(result[1])
    return DatasetSummary(
        name=name,
        class_names=classes,
        num_images=len(dicts),
        boxes_per_class=boxes_per_class,
        images_per_class=images_per_class,
        box_sizes=box_sizes,
        coco_areas=dict(areas),
        image_sizes=image_sizes.most_common(),
        images_without_boxes=without,
        annotation_fixes=dict(fixes),
        problems=problems,
    )

