"""Helpers of the data tests: tiny COCO-format datasets written into a temporary folder."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
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


# ----------------------------------------------------------------------------- one dataset, three layouts
def draw_scene(size, seed: int, num_boxes: int = 2, num_classes: int = 1):
    """An RGB image (h, w) = size with ``num_boxes`` filled boxes on a noisy background;
    returns (pixels, boxes XYXY in pixels, class ids). Class c is drawn in its own colour."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = rng.integers(60, 120, size=(h, w, 3), dtype=np.uint8)
    boxes, classes = [], []
    colours = [(40, 200, 60), (220, 60, 40), (50, 80, 230)]
    for _ in range(num_boxes):
        bw, bh = int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        c = int(rng.integers(num_classes))
        img[y0:y0 + bh, x0:x0 + bw] = colours[c % len(colours)]
        boxes.append([x0, y0, x0 + bw, y0 + bh])
        classes.append(c)
    return img, boxes, classes


def _scenes(n, size, seed, num_classes):
    return [draw_scene(size, seed * 1000 + i, num_boxes=1 + i % 2, num_classes=num_classes) for i in range(n)]


def write_coco_dataset(root: Path, class_names=("tree",), splits=(("train", 8), ("val", 4)), size=(64, 80),
                       ext: str = ".jpg") -> Dict[str, Path]:
    """``root/images/<split>_<i>.jpg`` + ``root/<split>.json`` per split (category ids from 1)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = {}
    for s, (split, n) in enumerate(splits):
        images, anns = [], []
        for i, (img, boxes, classes) in enumerate(_scenes(n, size, s, len(class_names))):
            name = f"{split}_{i}{ext}"
            Image.fromarray(img).save(root / "images" / name)
            images.append({"id": i + 1, "file_name": name, "height": size[0], "width": size[1]})
            for (x0, y0, x1, y1), c in zip(boxes, classes):
                anns.append({"image_id": i + 1, "category_id": c + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                             "area": (x1 - x0) * (y1 - y0)})
        cats = [{"id": c + 1, "name": n} for c, n in enumerate(class_names)]
        out[split] = write_coco(root, images, anns, categories=cats, json_name=f"{split}.json")
    return out


def write_voc_dataset(root: Path, class_names=("tree",), splits=(("train", 8), ("val", 4)), size=(64, 80),
                      ext: str = ".jpg") -> Path:
    """A Pascal VOC folder: Annotations/*.xml (1-based pixel boxes), ImageSets/Main/<split>.txt, JPEGImages/."""
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    for s, (split, n) in enumerate(splits):
        ids = []
        for i, (img, boxes, classes) in enumerate(_scenes(n, size, s, len(class_names))):
            fid = f"{split}_{i:04d}"
            ids.append(fid)
            Image.fromarray(img).save(root / "JPEGImages" / f"{fid}{ext}")
            objects = "".join(
                f"<object><name>{class_names[c]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                for (x0, y0, x1, y1), c in zip(boxes, classes)
            )
            (root / "Annotations" / f"{fid}.xml").write_text(
                f"<annotation><filename>{fid}{ext}</filename><size><width>{w}</width><height>{h}</height>"
                f"<depth>3</depth></size>{objects}</annotation>"
            )
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def write_yolo_dataset(root: Path, class_names=("tree",), splits=(("train", 8), ("val", 4)), size=(64, 80),
                       ext: str = ".jpg", names_as_dict: bool = False) -> Path:
    """ultralytics layout: images/<split>/*.jpg, labels/<split>/*.txt (class cx cy w h), data.yaml."""
    h, w = size
    for s, (split, n) in enumerate(splits):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, (img, boxes, classes) in enumerate(_scenes(n, size, s, len(class_names))):
            Image.fromarray(img).save(root / "images" / split / f"{i:04d}{ext}")
            lines = [f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                     for (x0, y0, x1, y1), c in zip(boxes, classes)]
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    names = {i: n for i, n in enumerate(class_names)} if names_as_dict else list(class_names)
    import yaml

    text = yaml.safe_dump({"path": ".", **{split: f"images/{split}" for split, _ in splits}, "names": names})
    (root / "data.yaml").write_text(text)
    return root / "data.yaml"


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


def portable_pipeline_image(index: int, height: int, width: int):
    """``parity_state.make_pipeline_image`` (the input images of the data-pipeline parity fixtures)
    equal on every CPU: ``torch.linspace`` rounds differently in its vectorized (AVX2 / AVX-512) and
    scalar kernels, which changes pixels of some images on a CPU without AVX2 (``default`` capability).
    This takes the linspace values of the CPU that made the fixtures
    (``tests/fixtures/pipeline_linspace_avx512.pt``: sizes 300, 333, 420, 480, 500, 640); every other
    step of the recipe is exactly rounded."""
    linspace = torch.load(Path(__file__).parent / "fixtures" / "pipeline_linspace_avx512.pt", weights_only=True)
    g = torch.Generator().manual_seed(100 + int(index))
    yy, xx = torch.meshgrid(linspace[height], linspace[width], indexing="ij")
    base = torch.stack([xx, yy, (xx + yy) / 2]) * 180
    noise = torch.rand((3, height, width), generator=g) * 75
    arr = (base + noise).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr, "RGB")


def pipeline_fixture_dicts(image_specs, root: Path) -> List[Dict]:
    """The inputs of a data-pipeline parity fixture (``fixture["spec"]["images"]``) as dataset dicts
    with their images written losslessly (PNG: the mapper reads exactly the generated pixels) under
    ``root``; the annotations in COCO form (XYWH, raw ``category_id``, ``iscrowd``)."""
    from detectron2.structures import BoxMode

    dicts = []
    for i, spec in enumerate(image_specs):
        path = Path(root) / f"{i}.png"
        portable_pipeline_image(i, spec["height"], spec["width"]).save(path)
        anns = [{"bbox": list(b), "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": z}
                for b, c, z in zip(spec["bbox_xywh"], spec["category_id"], spec["iscrowd"])]
        dicts.append({"file_name": str(path), "height": spec["height"], "width": spec["width"], "image_id": i,
                      "annotations": anns})
    return dicts
