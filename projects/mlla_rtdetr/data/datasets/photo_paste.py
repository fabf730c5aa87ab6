"""A small real-photo detection dataset, written to disk from photographs installed with the
project's own dependencies (no download): objects cut out of real photos and pasted at random
scale and position onto photo backgrounds, with exact boxes.

Sources: matplotlib's ``grace_hopper.jpg`` (``matplotlib.cbook.get_sample_data``) and
scikit-learn's ``china.jpg`` / ``flower.jpg`` (``sklearn/datasets/images``). Four classes, each a
fixed region of one photo (``PHOTO_OBJECTS``): Grace Hopper's face, the dahlia, the pagoda and
the ribbon bar. Backgrounds are random crops of object-free regions of the three photos
(``PHOTO_BACKGROUNDS``: the flag, the blue backdrop, the blurred leaves, sky, lake and trees).
Each pasted object is its source region resized to the sampled box (longer side
``U(min_object_size, max_object_size)`` of the image, aspect within ``max_aspect`` of the
source's), flipped at random, brightness and contrast jittered, and placed so that two boxes
overlap by at most ``max_overlap`` of the smaller one; its box is exactly the pasted rectangle.
The same settings give the same bytes.
"""
from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from PIL import Image, ImageEnhance

from .synthetic import GeneratedDatasetConfig, sample_free_box, write_generated_coco

__all__ = ["PHOTO_CLASSES", "PHOTO_OBJECTS", "PHOTO_BACKGROUNDS", "PhotoPasteConfig", "photo_path",
           "generate_photo_paste"]

FORMAT_VERSION = 1

# class -> (photo, (x0, y0, x1, y1) of the object in the photo, pixels)
PHOTO_OBJECTS: Dict[str, Tuple[str, Tuple[int, int, int, int]]] = {
    "face": ("grace_hopper", (155, 135, 370, 335)),
    "flower": ("flower", (168, 85, 448, 360)),
    "pagoda": ("china", (60, 25, 355, 345)),
    "ribbons": ("grace_hopper", (322, 485, 455, 528)),
}
PHOTO_CLASSES = tuple(PHOTO_OBJECTS)
# regions of the photos that hold none of the objects above
PHOTO_BACKGROUNDS: Tuple[Tuple[str, Tuple[int, int, int, int]], ...] = (
    ("grace_hopper", (0, 0, 150, 330)),  # flag
    ("grace_hopper", (375, 0, 512, 300)),  # blue backdrop
    ("flower", (0, 0, 165, 427)),  # blurred leaves
    ("flower", (450, 0, 640, 380)),
    ("china", (360, 0, 640, 427)),  # sky, lake, trees
    ("china", (0, 0, 60, 300)),
)


@dataclasses.dataclass(frozen=True)
class PhotoPasteConfig(GeneratedDatasetConfig):
    """Size and difficulty knobs (``GeneratedDatasetConfig``); ``max_aspect`` jitters each source
    region's own aspect."""

    image_size: int = 160
    max_objects: int = 4
    max_object_size: float = 0.5
    max_aspect: float = 1.25


def photo_path(photo: str) -> Path:
    """The installed file of a source photo: ``grace_hopper``, ``china`` or ``flower``."""
    if photo == "grace_hopper":
        import matplotlib.cbook

        return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if photo in ("china", "flower"):
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("The photo-paste dataset needs scikit-learn's sample photographs: pip install -e .[photos]")
        return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "images" / f"{photo}.jpg"
    raise ValueError(f"unknown photo {photo!r}")


@lru_cache(maxsize=None)
def _photo(photo: str) -> Image.Image:
    with Image.open(photo_path(photo)) as im:
        return im.convert("RGB")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    photo, (x0, y0, x1, y1) = PHOTO_BACKGROUNDS[int(rng.integers(len(PHOTO_BACKGROUNDS)))]
    w, h = x1 - x0, y1 - y0
    side = int(rng.uniform(0.5, 1.0) * min(w, h))
    cx, cy = x0 + int(rng.integers(0, w - side + 1)), y0 + int(rng.integers(0, h - side + 1))
    crop = _photo(photo).crop((cx, cy, cx + side, cy + side)).resize((size, size), Image.BILINEAR)
    return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def _render_image(rng: np.random.Generator, cfg: PhotoPasteConfig):
    """One image: (PIL RGB image, list of (category id, (x, y, w, h), area))."""
    img = _background(rng, cfg.image_size)
    aspects = [(b[2] - b[0]) / (b[3] - b[1]) for _, b in PHOTO_OBJECTS.values()]
    placed, objects = [], []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        found = sample_free_box(rng, cfg, len(PHOTO_CLASSES), placed, base_aspects=aspects)
        if found is None:
            continue
        cls, (x0, y0, x1, y1) = found
        l, t = int(round(x0)), int(round(y0))
        w = min(max(int(round(x1 - x0)), 4), cfg.image_size - l)
        h = min(max(int(round(y1 - y0)), 4), cfg.image_size - t)
        photo, region = PHOTO_OBJECTS[PHOTO_CLASSES[cls]]
        obj = _photo(photo).crop(region).resize((w, h), Image.BILINEAR)
        if rng.random() < 0.5:
            obj = obj.transpose(Image.FLIP_LEFT_RIGHT)
        obj = ImageEnhance.Brightness(obj).enhance(rng.uniform(0.75, 1.25))
        obj = ImageEnhance.Contrast(obj).enhance(rng.uniform(0.75, 1.25))
        img.paste(obj, (l, t))
        placed.append((l, t, l + w, t + h))
        objects.append((cls + 1, (float(l), float(t), float(w), float(h)), w * h))
    return img, objects


def generate_photo_paste(root: os.PathLike, cfg: PhotoPasteConfig = PhotoPasteConfig()) -> Path:
    """Write ``root/{train,val}/*.png`` and ``root/annotations/instances_{train,val}.json``
    (category ids 1..4 in ``PHOTO_CLASSES`` order)."""
    categories = [{"id": i + 1, "name": n, "supercategory": "photo"} for i, n in enumerate(PHOTO_CLASSES)]
    return write_generated_coco(root, lambda rng: _render_image(rng, cfg), categories, cfg,
                                "mlla_rtdetr photo paste", FORMAT_VERSION)
