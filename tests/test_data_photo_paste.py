"""The photo-paste dataset (``mlla_rtdetr/data/datasets/photo_paste.py``): objects cut from real
photographs installed with matplotlib / scikit-learn, pasted onto photo backgrounds with exact
boxes; COCO on disk, the same bytes for the same seed; ``tools/make_shapes_dataset.py --kind photos``."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from mlla_rtdetr.data.datasets import PHOTO_CLASSES, PhotoPasteConfig, generate_photo_paste
from mlla_rtdetr.data.datasets.photo_paste import PHOTO_BACKGROUNDS, PHOTO_OBJECTS, _background, _photo, _render_image
from mlla_rtdetr.errors import UserError

SMALL = dict(image_size=96, num_train=12, num_val=4, max_objects=4)


def _tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_source_regions_lie_inside_the_installed_photos():
    for photo, (x0, y0, x1, y1) in list(PHOTO_OBJECTS.values()) + list(PHOTO_BACKGROUNDS):
        w, h = _photo(photo).size
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (photo, (x0, y0, x1, y1))
    assert PHOTO_CLASSES == ("face", "flower", "pagoda", "ribbons")


def test_coco_files_boxes_inside_the_image_and_every_category(tmp_path):
    cfg = PhotoPasteConfig(**SMALL, seed=3)
    root = generate_photo_paste(tmp_path / "photos", cfg)
    seen = set()
    for split, n in (("train", 12), ("val", 4)):
        coco = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        assert [c["name"] for c in coco["categories"]] == list(PHOTO_CLASSES)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4]
        assert len(coco["images"]) == n and len(list((root / split).glob("*.png"))) == n
        per_image = {}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["category_id"] in (1, 2, 3, 4) and a["area"] == w * h and a["iscrowd"] == 0
            assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96
            side = max(w, h) / 96
            assert cfg.min_object_size - 0.02 <= side <= cfg.max_object_size + 0.02
            per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
            seen.add(a["category_id"])
        assert all(1 <= k <= cfg.max_objects for k in per_image.values())
        for im in coco["images"]:
            with Image.open(root / split / im["file_name"]) as img:
                assert img.size == (96, 96) and img.mode == "RGB"
    assert seen == {1, 2, 3, 4}


def test_boxes_are_exact_pixels_outside_every_box_are_the_background():
    cfg = PhotoPasteConfig(**SMALL)
    for i in range(6):
        seed = np.random.SeedSequence([cfg.seed, 0, i])
        img, objects = _render_image(np.random.default_rng(seed), cfg)
        background = np.asarray(_background(np.random.default_rng(seed), cfg.image_size), np.int16)
        pixels = np.asarray(img, np.int16)
        outside = np.ones(pixels.shape[:2], bool)
        for _, (x, y, w, h), _ in objects:
            outside[int(y):int(y + h), int(x):int(x + w)] = False
        assert objects and (pixels[outside] == background[outside]).all()
        for _, (x, y, w, h), _ in objects:  # each box's border rows / columns hold pasted pixels
            box = (slice(int(y), int(y + h)), slice(int(x), int(x + w)))
            changed = (pixels[box] != background[box]).any(-1)
            assert changed[:, 0].mean() > 0.5 or changed[:, -1].mean() > 0.5 or changed[0].mean() > 0.5


def test_same_seed_same_bytes_another_seed_differs(tmp_path):
    cfg = PhotoPasteConfig(**SMALL)
    a = _tree_digest(generate_photo_paste(tmp_path / "a", cfg))
    assert a == _tree_digest(generate_photo_paste(tmp_path / "b", cfg))
    assert a != _tree_digest(generate_photo_paste(tmp_path / "c", PhotoPasteConfig(**SMALL, seed=1)))


def test_make_shapes_dataset_writes_the_photo_set(tmp_path):
    from tools_utils import load_tool

    tool = load_tool("make_shapes_dataset")
    out = tmp_path / "photos"
    assert tool.main(["--kind", "photos", "--output", str(out), "--classes", "flower,face", "--num-train", "5",
                      "--num-val", "2", "--image-size", "64"]) == 0
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert train["categories"] == [{"id": 1, "name": "flower", "supercategory": "photo"},
                                   {"id": 2, "name": "face", "supercategory": "photo"}]
    assert len(train["images"]) == 5 and {a["category_id"] for a in train["annotations"]} <= {1, 2}
    with pytest.raises(UserError, match="--texture-strength does not apply to --kind photos"):
        tool.main(["--kind", "photos", "--output", str(tmp_path / "x"), "--texture-strength", "0.5"])
    with pytest.raises(UserError, match="unknown \\[.circle.\\]"):
        tool.main(["--kind", "photos", "--output", str(tmp_path / "y"), "--classes", "circle"])
    with pytest.raises(UserError, match="min_object_size"):
        tool.main(["--kind", "photos", "--output", str(tmp_path / "z"), "--min-object-size", "0.9",
                   "--max-object-size", "0.5"])
