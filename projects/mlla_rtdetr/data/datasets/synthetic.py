"""Embedded default dataset: deterministic COCO-format "synthetic shapes" detection data.

Shapes of five classes (each with its own shape and hue) of varied size, aspect, rotation and
colour, with limited overlap, on mildly textured backgrounds. Generated on first use into
``$MLLA_RTDETR_CACHE`` (default ``~/.cache/mlla_rtdetr``) as PNG files + COCO json; the same
settings give the same bytes. Category ids in the json are deliberately non-contiguous
(1, 3, 5, 7, 9) so the contiguous-id mapping back to dataset ids is exercised.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from detectron2.data import DatasetCatalog, MetadataCatalog

from .base import default_cache_dir, register_materializer
from .coco import load_coco_json_checked

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_CATEGORY_IDS",
    "GeneratedDatasetConfig",
    "SyntheticShapesConfig",
    "generate_synthetic_shapes",
    "ensure_synthetic_shapes",
    "register_synthetic_shapes",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SYNTHETIC_CLASSES = ("circle", "rectangle", "triangle", "star", "cross")
SYNTHETIC_CATEGORY_IDS = (1, 3, 5, 7, 9)
# Class hue in degrees: colour is a second cue besides shape (jittered per object).
_CLASS_HUES = (0.0, 120.0, 220.0, 50.0, 295.0)
_SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class GeneratedDatasetConfig:
    """Knobs every generated detection dataset has (``write_generated_coco``): image side, split
    sizes, objects per image, object size as a fraction of the image side (longer box side), aspect
    jitter, overlap between two boxes (of the smaller one) and the seed."""

    image_size: int = 256
    num_train: int = 1600
    num_val: int = 200
    min_objects: int = 1
    max_objects: int = 5
    min_object_size: float = 0.15
    max_object_size: float = 0.45
    max_aspect: float = 1.6  # width/height varies within [1/max_aspect, max_aspect]
    max_overlap: float = 0.25  # max intersection / smaller box area between two objects
    seed: int = 0

    def __post_init__(self):
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError("num_train and num_val must be >= 1")
        if not 0 <= self.min_objects <= self.max_objects or self.max_objects < 1:
            raise ValueError(f"need 0 <= min_objects <= max_objects, max_objects >= 1, got {self.min_objects}, {self.max_objects}")
        if not 0 < self.min_object_size <= self.max_object_size <= 1:
            raise ValueError(f"need 0 < min_object_size <= max_object_size <= 1, got {self.min_object_size}, {self.max_object_size}")
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")


@dataclasses.dataclass(frozen=True)
class SyntheticShapesConfig(GeneratedDatasetConfig):
    """Difficulty knobs of the synthetic shapes (``GeneratedDatasetConfig``'s and the background's)."""

    texture_strength: float = 0.3  # 0 = flat background, 1 = strong texture and noise
    hue_jitter: float = 12.0  # degrees

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.texture_strength <= 1:
            raise ValueError(f"texture_strength must be in [0, 1], got {self.texture_strength}")

    def digest(self) -> str:
        payload = json.dumps({"v": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- drawing
def _hsv_to_rgb(h: float, s: float, v: float) -> Tuple[int, int, int]:
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    m = v - c
    return tuple(int(round(255 * (t + m))) for t in (r, g, b))


def _unit_polygon(cls: str, rot: float) -> np.ndarray:
    """Vertices (N, 2) of a class shape rotated by ``rot`` radians, normalized to [0, 1]^2."""
    if cls == "triangle":
        ang = np.array([90.0, 210.0, 330.0]) * math.pi / 180
        pts = np.stack([np.cos(ang), np.sin(ang)], 1)
    elif cls == "star":
        ang = np.arange(10) * math.pi / 5 + math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    elif cls == "cross":
        a, b = 1.0, 0.32
        pts = np.array(
            [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
        )
    else:
        raise ValueError(cls)
    c, s = math.cos(rot), math.sin(rot)
    pts = pts @ np.array([[c, s], [-s, c]])
    pts = pts - pts.min(0)
    return pts / pts.max(0)


def _background(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """(size, size, 3) float background: muted base colour + smooth colour blobs + stripes."""
    base = np.array(_hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.35, 0.85)), np.float32)
    img = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    if strength <= 0:
        return img
    grid = rng.uniform(-1, 1, size=(6, 6, 3)).astype(np.float32)
    blobs = np.stack(
        [np.asarray(Image.fromarray(grid[..., c]).resize((size, size), Image.BICUBIC)) for c in range(3)], -1
    )
    theta, freq, phase = rng.uniform(0, math.pi), rng.uniform(4, 14), rng.uniform(0, 2 * math.pi)
    t = np.arange(size, dtype=np.float32) * (2 * math.pi * freq / size)
    # sin(a x + b y + c) = sin(a x + c) cos(b y) + cos(a x + c) sin(b y): outer products, no grid.
    ax, by = t * math.cos(theta) + phase, t * math.sin(theta)
    stripes = np.outer(np.cos(by), np.sin(ax)) + np.outer(np.sin(by), np.cos(ax))
    return img + strength * (60.0 * blobs + 25.0 * stripes[..., None])


def _render_image(rng: np.random.Generator, cfg: SyntheticShapesConfig):
    """One image: (PIL RGB image, list of (class index, (x, y, w, h), area))."""
    S = cfg.image_size
    canvas = _background(rng, S, cfg.texture_strength)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    n_target = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    placed: List[Tuple[float, float, float, float]] = []
    objects = []
    for _ in range(n_target):
        found = sample_free_box(rng, cfg, len(SYNTHETIC_CLASSES), placed)
        if found is None:
            continue
        cls, box = found
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        name = SYNTHETIC_CLASSES[cls]
        rot = rng.uniform(0, 2 * math.pi)
        colour = _hsv_to_rgb(
            _CLASS_HUES[cls] + rng.uniform(-cfg.hue_jitter, cfg.hue_jitter), rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0)
        )
        mask = Image.new("L", (S, S), 0)
        draw = ImageDraw.Draw(mask)
        if name == "circle":
            draw.ellipse(box, fill=255)
        elif name == "rectangle":
            draw.rectangle(box, fill=255)
        else:
            pts = _unit_polygon(name, rot) * np.array([w, h]) + np.array([x0, y0])
            draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
        bbox = mask.getbbox()
        if bbox is None:
            continue
        img.paste(colour, mask=mask)
        l, t, r, b = bbox
        objects.append((cls, (float(l), float(t), float(r - l), float(b - t)), int(np.count_nonzero(np.asarray(mask)))))
        placed.append((l, t, r, b))
    return img, objects


def sample_free_box(rng: np.random.Generator, cfg, num_classes: int, placed, base_aspects=None, attempts: int = 30):
    """A class and a box ``(x0, y0, x1, y1)`` (floats) overlapping each of ``placed`` by at most
    ``cfg.max_overlap`` (of the smaller box), or None after ``attempts`` tries.

    The longer side is ``U(cfg.min_object_size, cfg.max_object_size) * cfg.image_size``; the aspect
    (w / h) is ``base_aspects[cls]`` (1 if None) times ``exp(U(-log a, log a))``, ``a = cfg.max_aspect``.
    """
    S = cfg.image_size
    for _attempt in range(attempts):
        cls = int(rng.integers(num_classes))
        side = rng.uniform(cfg.min_object_size, cfg.max_object_size) * S
        aspect = math.exp(rng.uniform(-math.log(cfg.max_aspect), math.log(cfg.max_aspect)))
        if base_aspects is not None:
            aspect *= base_aspects[cls]
        w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
        w, h = max(w, 4.0), max(h, 4.0)
        x0, y0 = rng.uniform(0, S - w), rng.uniform(0, S - h)
        box = (x0, y0, x0 + w, y0 + h)
        if all(_overlap(box, p) <= cfg.max_overlap for p in placed):
            return cls, box
    return None


def _overlap(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


# ----------------------------------------------------------------------------- files
def generate_synthetic_shapes(root: os.PathLike, cfg: SyntheticShapesConfig = SyntheticShapesConfig()) -> Path:
    """Write ``root/{train,val}/*.png`` and ``root/annotations/instances_{train,val}.json``."""
    categories = [{"id": cid, "name": n, "supercategory": "shape"} for cid, n in zip(SYNTHETIC_CATEGORY_IDS, SYNTHETIC_CLASSES)]

    def render(rng):
        img, objects = _render_image(rng, cfg)
        return img, [(SYNTHETIC_CATEGORY_IDS[cls], bbox, area) for cls, bbox, area in objects]

    return write_generated_coco(root, render, categories, cfg, "mlla_rtdetr synthetic shapes", FORMAT_VERSION)


def write_generated_coco(root: os.PathLike, render, categories: List[Dict[str, Any]], cfg, description: str,
                         version: int) -> Path:
    """Write a generated detection dataset as COCO: ``root/{train,val}/NNNNNN.png`` and
    ``root/annotations/instances_{train,val}.json``.

    Image ``i`` of a split is ``render(rng)`` with its own generator seeded by
    ``(cfg.seed, split index, i)``, so the same ``cfg`` gives the same bytes. ``render`` returns a
    PIL RGB image of side ``cfg.image_size`` and its objects as ``(category_id, (x, y, w, h), area)``.
    """
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split_code, split in enumerate(_SPLITS):
        (root / split).mkdir(exist_ok=True)
        n_images = cfg.num_train if split == "train" else cfg.num_val
        images, annotations = [], []
        for i in range(n_images):
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, split_code, i]))
            img, objects = render(rng)
            file_name = f"{i:06d}.png"
            img.save(root / split / file_name, format="PNG", compress_level=1)
            image_id = i + 1
            images.append({"id": image_id, "file_name": file_name, "height": cfg.image_size, "width": cfg.image_size})
            for category_id, bbox, area in objects:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category_id,
                        "bbox": list(bbox),
                        "area": area,
                        "iscrowd": 0,
                    }
                )
        coco = {
            "info": {"description": f"{description} ({split})", "version": str(version),
                     "config": dataclasses.asdict(cfg)},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump(coco, f, sort_keys=True)
    return root


def dataset_root(cfg: SyntheticShapesConfig, cache_dir: Optional[os.PathLike] = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"synthetic_shapes_v{FORMAT_VERSION}_{cfg.digest()}"


def ensure_synthetic_shapes(cfg: SyntheticShapesConfig = SyntheticShapesConfig(),
                            cache_dir: Optional[os.PathLike] = None) -> Path:
    """The dataset folder, generated first if absent. Safe when several processes race: each
    writes a private temporary folder and renames it into place."""
    root = dataset_root(cfg, cache_dir)
    if (root / "annotations" / "instances_val.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    try:
        generate_synthetic_shapes(tmp, cfg)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "annotations" / "instances_val.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Generated synthetic shapes dataset (%d train / %d val) in %.1fs at %s",
                cfg.num_train, cfg.num_val, time.perf_counter() - t0, root)
    return root


def register_synthetic_shapes(prefix: str = "synthetic_shapes", cache_dir: Optional[os.PathLike] = None,
                              **knobs: Any) -> Tuple[str, str]:
    """Register ``{prefix}_train`` / ``{prefix}_val`` (lazily generated) and return the names.

    ``knobs`` are SyntheticShapesConfig fields. Re-registering the same settings is a no-op.
    """
    cfg = SyntheticShapesConfig(**knobs)
    root = dataset_root(cfg, cache_dir)
    names = (f"{prefix}_train", f"{prefix}_val")
    for split, name in zip(_SPLITS, names):
        json_file = str(root / "annotations" / f"instances_{split}.json")
        image_root = str(root / split)
        if name in DatasetCatalog.list():
            if getattr(MetadataCatalog.get(name), "json_file", None) == json_file:
                continue
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

        def _load(json_file=json_file, image_root=image_root, name=name):
            ensure_synthetic_shapes(cfg, cache_dir)
            return load_coco_json_checked(json_file, image_root, name)

        DatasetCatalog.register(name, _load)
        register_materializer(name, lambda: _materialize(prefix, cache_dir, knobs))
        MetadataCatalog.get(name).set(
            thing_classes=list(SYNTHETIC_CLASSES),
            thing_dataset_id_to_contiguous_id={cid: i for i, cid in enumerate(SYNTHETIC_CATEGORY_IDS)},
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
        )
    return names


def _materialize(prefix: str, cache_dir: Optional[os.PathLike], knobs: Dict[str, Any]) -> None:
    """Generate the files; with the default cache dir, first follow a changed $MLLA_RTDETR_CACHE."""
    if cache_dir is None:
        register_synthetic_shapes(prefix, None, **knobs)
    ensure_synthetic_shapes(SyntheticShapesConfig(**knobs), cache_dir)
