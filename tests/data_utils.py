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
