"""The embedded synthetic shapes dataset: determinism, COCO validity, registration, caching."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from mlla_rtdetr.data import (
    SYNTHETIC_CATEGORY_IDS,
    SYNTHETIC_CLASSES,
    SyntheticShapesConfig,
    generate_synthetic_shapes,
    get_dataset_dicts,
    register_synthetic_shapes,
)
from mlla_rtdetr.data.datasets.synthetic import dataset_root

from data_utils import unique_name

SMALL = dict(image_size=96, num_train=10, num_val=4, texture_strength=0.5)


def tree_digest(root):
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest(), len(files)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = SyntheticShapesConfig(**SMALL)
    d1, n1 = tree_digest(generate_synthetic_shapes(tmp_path / "a", cfg))
    d2, n2 = tree_digest(generate_synthetic_shapes(tmp_path / "b", cfg))
    assert n1 == n2 == SMALL["num_train"] + SMALL["num_val"] + 2  # PNGs + 2 json
    assert d1 == d2
    d3, _ = tree_digest(generate_synthetic_shapes(tmp_path / "c", SyntheticShapesConfig(**dict(SMALL, seed=1))))
    assert d3 != d1
    # Settings select the cache folder: different knobs never share files.
    assert dataset_root(cfg, tmp_path) != dataset_root(SyntheticShapesConfig(**dict(SMALL, seed=1)), tmp_path)


def test_coco_json_valid_and_objects_within_knobs(tmp_path):
    from pycocotools.coco import COCO

    cfg = SyntheticShapesConfig(**dict(SMALL, num_train=30, min_objects=2, max_objects=4, min_object_size=0.2))
    root = generate_synthetic_shapes(tmp_path, cfg)
    coco = COCO(str(root / "annotations" / "instances_train.json"))
    assert sorted(coco.getCatIds()) == list(SYNTHETIC_CATEGORY_IDS) == [1, 3, 5, 7, 9]
    assert [coco.cats[i]["name"] for i in SYNTHETIC_CATEGORY_IDS] == list(SYNTHETIC_CLASSES)
    assert len(coco.getImgIds()) == 30
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert min(per_image) >= 1 and max(per_image) <= 4
    S = cfg.image_size
    for ann in coco.dataset["annotations"]:
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= S and y + h <= S
        assert max(w, h) >= cfg.min_object_size * S - 2  # longer side >= min size (pixel rounding)
        assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0
    # Images are RGB PNGs of the declared size and the box region actually holds the shape's colour.
    img = coco.imgs[coco.getImgIds()[0]]
    arr = np.asarray(Image.open(root / "train" / img["file_name"]))
    assert arr.shape == (S, S, 3) and arr.dtype == np.uint8
    val = json.loads((root / "annotations" / "instances_val.json").read_text())
    assert len(val["images"]) == cfg.num_val
    assert set(val["images"][0]) >= {"id", "file_name", "height", "width"}


def test_registration_maps_noncontiguous_ids_and_generates_lazily(tmp_path):
    prefix = unique_name("shapes")
    train, val = register_synthetic_shapes(prefix, cache_dir=tmp_path, **SMALL)
    assert (train, val) == (f"{prefix}_train", f"{prefix}_val")
    meta = MetadataCatalog.get(val)
    assert meta.thing_classes == list(SYNTHETIC_CLASSES)
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 3: 1, 5: 2, 7: 3, 9: 4}
    assert meta.evaluator_type == "coco"
    assert not list(tmp_path.iterdir()), "registration alone must not generate anything"

    dicts = get_dataset_dicts(train)
    assert len(dicts) == SMALL["num_train"]
    coco = json.loads(open(MetadataCatalog.get(train).json_file).read())
    by_id = {a["id"]: a for a in coco["annotations"]}
    raw = [a for a in coco["annotations"] if a["image_id"] == dicts[0]["image_id"]]
    # contiguous ids in the dicts map back to the json's dataset ids
    inv = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    assert [inv[a["category_id"]] for a in dicts[0]["annotations"]] == [a["category_id"] for a in raw]
    assert by_id and all(a["category_id"] in SYNTHETIC_CATEGORY_IDS for a in by_id.values())

    # cached: a second load does not rewrite the files
    png = sorted(tmp_path.rglob("*.png"))[0]
    mtime = png.stat().st_mtime_ns
    assert len(DatasetCatalog.get(val)) == SMALL["num_val"]
    assert png.stat().st_mtime_ns == mtime
    # re-registering the same settings is a no-op
    assert register_synthetic_shapes(prefix, cache_dir=tmp_path, **SMALL) == (train, val)


def test_default_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path / "first"))
    prefix = unique_name("envshapes")
    train, _ = register_synthetic_shapes(prefix, **SMALL)
    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path / "second"))
    get_dataset_dicts(train)
    assert (tmp_path / "second").is_dir() and not (tmp_path / "first").exists()
    assert MetadataCatalog.get(train).json_file.startswith(str(tmp_path / "second"))


def test_default_names_registered_with_metadata():
    for name in ("synthetic_shapes_train", "synthetic_shapes_val"):
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(SYNTHETIC_CLASSES)
        assert meta.evaluator_type == "coco" and meta.json_file.endswith(".json")
    d = SyntheticShapesConfig()
    # learnable defaults for the CPU demo (see issue "Embedded default dataset")
    assert d.image_size == 256 and d.num_val == 200 and 1000 <= d.num_train <= 2000
    assert d.min_object_size >= 0.12 and d.max_objects <= 5 and len(SYNTHETIC_CLASSES) == 5


@pytest.mark.parametrize(
    "bad", [dict(image_size=8), dict(min_objects=3, max_objects=2), dict(min_object_size=0.0), dict(texture_strength=2.0)]
)
def test_bad_knobs_rejected(bad):
    with pytest.raises(ValueError):
        SyntheticShapesConfig(**bad)
