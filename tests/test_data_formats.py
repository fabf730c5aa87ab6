"""The dataset sources (COCO json, Pascal VOC, ultralytics YOLO), their preparation before a run
(registration from config fields, parallel existence check, class-count check, hand-over to the
loaders), the COCO json of non-COCO test sets, and the dataset summary."""
import json

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

import mlla_rtdetr.data.datasets.catalog as catalog
from mlla_rtdetr.config import get_config
from mlla_rtdetr.data import (
    config_class_names,
    dataset_classes,
    get_dataset_dicts,
    load_yolo,
    prepare_datasets,
    read_yolo_yaml,
    register_dataset,
    register_voc,
    register_yolo,
    stat_image_files,
    summarize_dataset,
)
from mlla_rtdetr.data.datasets.yolo import parse_yolo_labels, yolo_label_file
from mlla_rtdetr.data import ensure_coco_json
from mlla_rtdetr.errors import ConfigError, DataError

from data_utils import draw_scene, unique_name, write_coco_dataset, write_voc_dataset, write_yolo_dataset

CLASSES = ("tree", "car")


# ----------------------------------------------------------------------------- VOC
def test_voc_folder_read_by_detectron2_loader(tmp_path):
    root = write_voc_dataset(tmp_path / "voc", class_names=CLASSES, splits=(("train", 4), ("val", 3)))
    xml = (root / "Annotations" / "train_0000.xml").read_text()
    name = register_voc(unique_name("voc"), str(root), "train")
    assert dataset_classes(name) == ["car", "tree"]  # the names in Annotations/, sorted
    dicts = DatasetCatalog.get(name)
    assert [d["image_id"] for d in dicts] == [1, 2, 3, 4] and dicts[0]["voc_id"] == "train_0000"
    assert dicts[0]["file_name"] == str(root / "JPEGImages" / "train_0000.jpg")
    ann = dicts[0]["annotations"][0]
    xmin = float(xml.split("<xmin>")[1].split("<")[0])
    assert ann["bbox_mode"] == BoxMode.XYXY_ABS and ann["bbox"][0] == xmin - 1  # 1-based -> 0-based
    # pinned classes set the ids; the split of another name shares them
    pinned = register_voc(unique_name("voc"), str(root), "val", class_names=["tree", "car"])
    assert dataset_classes(pinned) == ["tree", "car"]
    assert register_voc(pinned, str(root), "val", class_names=["tree", "car"]) == pinned  # idempotent
    with pytest.raises(ConfigError, match="already registered"):
        register_voc(pinned, str(root), "train", class_names=["tree", "car"])


def test_voc_png_images_and_errors_name_the_file(tmp_path):
    root = write_voc_dataset(tmp_path / "voc", splits=(("train", 3),), ext=".png")
    dicts = DatasetCatalog.get(register_voc(unique_name("voc"), str(root), "train"))
    assert dicts[1]["file_name"].endswith("train_0001.png")  # detectron2 assumes .jpg
    with pytest.raises(DataError, match=r"split file .*trainval.txt not found; splits in .*: \['train'\]"):
        register_voc(unique_name("voc"), str(root), "trainval")
    with pytest.raises(DataError) as e:
        DatasetCatalog.get(register_voc(unique_name("voc"), str(root), "train", class_names=["car"]))
    assert "train_0000.xml: object 0 has class 'tree', not one of class_names ['car']" in str(e.value)
    (root / "Annotations" / "train_0002.xml").write_text("<annotation><size>")
    with pytest.raises(DataError, match=r"1 VOC annotation file\(s\) are not valid XML:\n  .*train_0002.xml"):
        register_voc(unique_name("voc"), str(root), "train")
    (root / "ImageSets" / "Main" / "one.txt").write_text("train_0000\n")
    with pytest.raises(DataError, match="lists a single image"):
        DatasetCatalog.get(register_voc(unique_name("voc"), str(root), "one", class_names=["tree"]))


# ----------------------------------------------------------------------------- YOLO
def test_yolo_layout_boxes_in_pixels_and_names(tmp_path):
    yaml_file = write_yolo_dataset(tmp_path / "y", class_names=CLASSES, names_as_dict=True,
                                   splits=(("train", 3), ("val", 2)))
    ds = read_yolo_yaml(str(yaml_file))
    assert ds.class_names == list(CLASSES) and sorted(ds.splits) == ["train", "val"]
    dicts = load_yolo(str(yaml_file), "train")
    img, boxes, classes = draw_scene((64, 80), 0, num_boxes=1, num_classes=2)  # train image 0
    assert dicts[0]["file_name"] == str(tmp_path / "y" / "images" / "train" / "0000.jpg")
    assert (dicts[0]["height"], dicts[0]["width"], dicts[0]["image_id"]) == (64, 80, 1)
    assert dicts[0]["annotations"][0]["category_id"] == classes[0]
    np.testing.assert_allclose(dicts[0]["annotations"][0]["bbox"], boxes[0], atol=1e-3)


def test_yolo_list_files_polygons_negatives_and_label_rule(tmp_path):
    root = tmp_path / "set"
    (root / "images" / "a").mkdir(parents=True)
    (root / "labels" / "a").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(root / "images" / "a" / f"{i}.png")
    (root / "labels" / "a" / "0.txt").write_text("1 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.5 0.5\n")  # duplicate row
    (root / "labels" / "a" / "1.txt").write_text("0 0.1 0.2 0.6 0.2 0.6 0.7\n")  # polygon
    (root / "train.txt").write_text("./images/a/0.png\nimages/a/1.png\n./images/a/2.png\nnotes.md\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: train.txt\nval: images/a\nnames: [a, b]\nnc: 2\n")
    assert yolo_label_file("/d/images/x/images/y.jpg") == "/d/images/x/labels/y.txt"
    dicts = load_yolo(str(root / "data.yaml"), "train")
    assert [len(d["annotations"]) for d in dicts] == [1, 1, 0]  # duplicate removed; 2.png: no label file
    np.testing.assert_allclose(dicts[1]["annotations"][0]["bbox"], [4, 4, 24, 14])  # x 0.1..0.6, y 0.2..0.7
    assert len(load_yolo(str(root / "data.yaml"), "val")) == 3


def test_yolo_label_errors_name_file_and_line(tmp_path):
    rows, problems, dup = parse_yolo_labels("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.1 0.1\n", 2, "x.txt")
    assert problems == ["x.txt:2: class 2 is not a class id of data.yaml's names (0..1)"] and len(rows) == 0
    _, problems, _ = parse_yolo_labels("0 12 40 30 30\n", 2, "x.txt")
    assert "x.txt:1: coordinates" in problems[0] and "normalized" in problems[0]
    _, problems, _ = parse_yolo_labels("0 0.5 0.5\n", 2, "x.txt")
    assert "expected 'class cx cy w h'" in problems[0]
    yaml_file = write_yolo_dataset(tmp_path / "y", splits=(("train", 2), ("val", 2)))
    (tmp_path / "y" / "labels" / "val" / "0001.txt").write_text("3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"\(val\): 1 label problem\(s\):\n  .*0001.txt:1: class 3"):
        load_yolo(str(yaml_file), "val")
    (tmp_path / "y" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: a, 2: b}\n")
    with pytest.raises(DataError, match=r"names keys must be the class ids 0..1, got \[0, 2\]"):
        read_yolo_yaml(str(yaml_file))
    with pytest.raises(DataError, match="YOLO data file not found"):
        read_yolo_yaml(str(tmp_path / "nope.yaml"))
    (tmp_path / "y" / "data.yaml").write_text("train: images/train\nval: images/gone\nnames: [a]\n")
    with pytest.raises(DataError, match="val entry 'images/gone' does not exist"):
        load_yolo(str(yaml_file), "val")


def test_yolo_sizes_exif_cache_and_unreadable_header(tmp_path, monkeypatch):
    yaml_file = write_yolo_dataset(tmp_path / "y", splits=(("train", 3), ("val", 1)))
    img = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: 10 wide, 30 high
    img.save(tmp_path / "y" / "images" / "train" / "0001.jpg", exif=exif.tobytes())
    (tmp_path / "y" / "images" / "train" / "0002.jpg").write_bytes(b"")  # empty file
    dicts = load_yolo(str(yaml_file), "train")
    assert (dicts[1]["height"], dicts[1]["width"]) == (30, 10)
    assert (dicts[2]["height"], dicts[2]["width"], dicts[2]["annotations"]) == (0, 0, [])  # skipped when read

    import mlla_rtdetr.data.datasets.yolo as yolo

    def no_reads(path):
        raise AssertionError(f"header read again: {path}")

    monkeypatch.setattr(yolo, "read_image_size", no_reads)  # the second load reads the cache
    again = load_yolo(str(yaml_file), "train")
    assert [(d["height"], d["width"]) for d in again] == [(d["height"], d["width"]) for d in dicts]


# ----------------------------------------------------------------------------- sources and checks
def test_source_fields_validated():
    with pytest.raises(ConfigError, match="needs json_file and image_root; image_root is not set"):
        register_dataset("x", json_file="a.json")
    with pytest.raises(ConfigError, match=r"Set one dataset source, not \['json_file', 'image_root', 'yolo_yaml'\]"):
        register_dataset("x", json_file="a.json", image_root="i", yolo_yaml="d.yaml")
    with pytest.raises(ConfigError, match="A VOC dataset needs split"):
        register_dataset("x", voc_root="v")
    with pytest.raises(ConfigError, match=r"class_names must be a list of names, e.g. class_names=\[cat,dog\]"):
        get_dataset_dicts("x", voc_root="v", split="train", class_names="cat")
    with pytest.raises(DataError, match="Dataset 'synthetic_shapes_trian' is not registered.*synthetic_shapes_train"):
        register_dataset("synthetic_shapes_trian")


def test_stat_image_files_parallel_same_as_serial(tmp_path):
    paths = []
    for i in range(1200):
        p = tmp_path / f"{i}.jpg"
        if i % 7:
            p.write_bytes(b"" if i % 100 == 1 else b"x")
        paths.append(str(p))
    paths.append(str(tmp_path))  # a folder is not an image file
    missing, empty = stat_image_files(paths, threads=8)
    assert missing == [i for i in range(1200) if i % 7 == 0] + [1200]
    assert empty == [i for i in range(1200) if i % 100 == 1 and i % 7]
    assert stat_image_files(paths, threads=1) == (missing, empty)


def _tiny_config(**datasets):
    cfg = get_config("rtdetr_tiny_synthetic.py")
    for split, fields in datasets.items():
        for k, v in fields.items():
            cfg.dataloader[split].dataset[k] = v
    return cfg


def test_prepare_registers_from_config_checks_files_and_hands_dicts_over(tmp_path, monkeypatch):
    jsons = write_coco_dataset(tmp_path, class_names=CLASSES, splits=(("train", 4), ("val", 2)))
    tr, va = unique_name("trees_train"), unique_name("trees_val")
    cfg = _tiny_config(train=dict(names=tr, json_file=str(jsons["train"]), image_root=str(tmp_path / "images")),
                       test=dict(names=va, json_file=str(jsons["val"]), image_root=str(tmp_path / "images")))
    cfg.model.num_classes = 2
    catalog.release_held_dicts()
    loads = []
    real_get = DatasetCatalog.get
    monkeypatch.setattr(DatasetCatalog, "get", lambda name: loads.append(name) or real_get(name))
    prepared = prepare_datasets(cfg)
    assert [(p.key, p.names, p.classes, p.num_images) for p in prepared] == [
        ("dataloader.train.dataset", [tr], list(CLASSES), 4), ("dataloader.test.dataset", [va], list(CLASSES), 2)]
    assert list(cfg.dataloader.train.dataset.class_names) == list(CLASSES)  # recorded for config.yaml
    prepare_datasets(cfg)  # the launcher's, then the training process's call: nothing read again
    from detectron2.config import instantiate

    assert len(instantiate(cfg.dataloader.train.dataset)) == 4
    assert loads == [tr, va] and len(catalog._HELD) == 1
    assert len(instantiate(cfg.dataloader.test.dataset)) == 2
    assert loads == [tr, va] and not catalog._HELD  # taken over, not kept
    assert len(instantiate(cfg.dataloader.test.dataset)) == 2 and loads == [tr, va, va]  # a later build reads


def test_prepare_lists_missing_files_of_every_dataset_in_one_message(tmp_path):
    jsons = write_coco_dataset(tmp_path, splits=(("train", 3), ("val", 2)))
    data = json.loads(jsons["train"].read_text())
    data["images"] += [{"id": 100 + i, "file_name": f"gone_{i}.jpg", "height": 64, "width": 80} for i in range(25)]
    jsons["train"].write_text(json.dumps(data))
    (tmp_path / "images" / "val_1.jpg").unlink()
    images = str(tmp_path / "images")
    cfg = _tiny_config(train=dict(names=unique_name("t"), json_file=str(jsons["train"]), image_root=images),
                       test=dict(names=unique_name("v"), json_file=str(jsons["val"]), image_root=images))
    cfg.model.num_classes = 1
    with pytest.raises(DataError) as e:
        prepare_datasets(cfg)
    msg = str(e.value)
    assert msg.startswith("dataloader.train.dataset: Dataset '")
    assert "25 of 28 image files do not exist:" in msg and "gone_19.jpg (image_id=119)" in msg
    assert "gone_20.jpg" not in msg and "... and 5 more" in msg
    assert "dataloader.test.dataset: Dataset '" in msg and "1 of 2 image files do not exist:\n  " in msg
    assert prepare_datasets(cfg, splits=("train",), check_files=False, keep_loaded=False)  # check left out


def test_config_class_names_from_run_config_or_from_the_data(tmp_path):
    yaml_file = write_yolo_dataset(tmp_path / "y", class_names=CLASSES, splits=(("train", 1), ("val", 1)))
    cfg = _tiny_config(train=dict(names=unique_name("yt"), yolo_yaml=str(yaml_file)))
    cfg.dataloader.test.dataset.names = unique_name("yv")  # test follows the train data.yaml
    assert config_class_names(cfg) == list(CLASSES)
    cfg.dataloader.test.dataset.class_names = ["x", "y"]  # recorded in a run's config.yaml: the data is not read
    cfg.dataloader.train.dataset.yolo_yaml = str(tmp_path / "gone.yaml")
    assert config_class_names(cfg) == ["x", "y"]


def test_coco_json_of_other_sources_is_content_addressed(tmp_path):
    root = write_voc_dataset(tmp_path / "voc", splits=(("val", 3),))
    name = register_voc(unique_name("voc"), str(root), "val")
    path = ensure_coco_json(name)
    assert MetadataCatalog.get(name).json_file == path
    coco = json.load(open(path))
    assert [im["id"] for im in coco["images"]] == [1, 2, 3] and coco["categories"][0]["name"] == "tree"
    mtime = (tmp_path / path).stat().st_mtime_ns

    def again():  # as another process would: register, convert
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        return ensure_coco_json(register_voc(name, str(root), "val"))

    assert again() == path and (tmp_path / path).stat().st_mtime_ns == mtime  # same content: same file
    xml = root / "Annotations" / "val_0001.xml"
    xml.write_text(xml.read_text().replace("<xmin>", "<xmin>1"))
    assert again() != path  # changed data: never a stale conversion


def test_summary_counts_and_problems(tmp_path):
    yaml_file = write_yolo_dataset(tmp_path / "y", class_names=CLASSES, splits=(("train", 6), ("val", 1)))
    (tmp_path / "y" / "labels" / "train" / "0005.txt").write_text("")  # a negative
    jpg = tmp_path / "y" / "images" / "train" / "0004.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[:len(data) // 2])  # truncated: the header reads, decoding fails
    name = register_yolo(unique_name("ys"), str(yaml_file), "train")
    s = summarize_dataset(name)
    expected = [draw_scene((64, 80), i, num_boxes=1 + i % 2, num_classes=2)[2] for i in range(5)]
    per_class = [sum(c.count(k) for c in expected) for k in range(2)]
    assert (s.num_images, s.boxes_per_class, sum(s.box_sizes)) == (6, per_class, sum(per_class))
    assert s.images_without_boxes == [str(tmp_path / "y" / "images" / "train" / "0005.jpg")]
    assert s.image_sizes == [((80, 64), 6)] and not s.problems
    decoded = summarize_dataset(name, decode=True)
    assert list(decoded.problems) == ["images that cannot be decoded"] and "0004.jpg" in decoded.problems[
        "images that cannot be decoded"][0]
    assert "problem: 1 images that cannot be decoded:\n    Cannot decode image" in decoded.format()


def test_data_configs_name_their_required_fields():
    cfg = get_config("common/data/yolo_detection.py")
    with pytest.raises(ConfigError, match="dataloader.train.dataset.yolo_yaml required by the config"):
        prepare_datasets(cfg)
