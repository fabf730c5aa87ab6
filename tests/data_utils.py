"""Helpers of the data tests: tiny COCO-format datasets written into a temporary folder."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 2, "name": "red"}, {"id": 7, "name": "blue"}]  # deliberately non-contiguous


def make_image(path: Path, size=(48, 64), seed: int = 0, mode: str = "RGB") -> np.ndarray:
    """Write a random RGB image of (h, w) = size; returns its (h, w, 3) uint8 pixels."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").convert(mode).save(path)
    return arr


def write_coco(
    root: Path,
    images: Sequence[Dict],
    annotations: Sequence[Dict],
    categories: Optional[List[Dict]] = None,
    json_name: str = "ann.json",
) -> Path:
    data = {
        "images": list(images),
        "annotations": [dict({"id": i + 1, "iscrowd": 0}, **a) for i, a in enumerate(annotations)],
        "categories": categories if categories is not None else CATEGORIES,
    }
    path = root / json_name
    path.write_text(json.dumps(data))
    return path


def make_tiny_coco(root: Path, num_images: int = 8, size=(48, 64), boxes_per_image: int = 2):
    """``num_images`` random images with ``boxes_per_image`` boxes each; returns (json, image_root)."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    rng = np.random.default_rng(123)
    h, w = size
    for i in range(num_images):
        make_image(img_dir / f"{i}.png", size, seed=i)
        images.append({"id": 100 + i, "file_name": f"{i}.png", "height": h, "width": w})
        for _ in range(boxes_per_image):
            bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"image_id": 100 + i, "category_id": int(rng.choice([2, 7])), "bbox": [x, y, bw, bh]})
    return write_coco(root, images, anns), img_dir


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def synthetic_val_subset(root: Path, num_images: int, coco80: bool = False):
    """The first ``num_images`` images of the embedded ``synthetic_shapes`` val split as a COCO-format
    set; with ``coco80`` the categories are COCO's 80 (the five shapes become the first five), for
    models with official 80-class heads. Returns (json_file, image_root)."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    from mlla_rtdetr.data.datasets.synthetic import SYNTHETIC_CATEGORY_IDS, SyntheticShapesConfig, ensure_synthetic_shapes

    src = ensure_synthetic_shapes(SyntheticShapesConfig())
    data = json.loads((src / "annotations" / "instances_val.json").read_text())
    images = data["images"][:num_images]
    keep = {im["id"] for im in images}
    anns = [a for a in data["annotations"] if a["image_id"] in keep]
    categories = data["categories"]
    if coco80:
        things = [c for c in COCO_CATEGORIES if c["isthing"]]
        to_coco = {cid: things[i]["id"] for i, cid in enumerate(SYNTHETIC_CATEGORY_IDS)}
        anns = [dict(a, category_id=to_coco[a["category_id"]]) for a in anns]
        categories = [{"id": c["id"], "name": c["name"]} for c in things]
    path = Path(root) / f"synthetic_val_{num_images}{'_coco80' if coco80 else ''}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path, src / "val"
