"""COCO-format loading and bad data: clear errors naming file and record, or counted fixes."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from omegaconf import OmegaConf

from mlla_rtdetr.engine import check_num_classes, load_config
from mlla_rtdetr.data import (
    RTDETRDatasetMapper,
    dataset_classes,
    get_dataset_dicts,
    load_coco_json_checked,
    read_image_rgb,
    register_coco_format,
    sanitize_dataset_dicts,
)

from mlla_rtdetr.errors import ConfigError, DataError

from data_utils import make_image, make_tiny_coco, unique_name, write_coco


def test_invalid_json_names_file_and_position(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [],\n "annotations": [,\n "categories": []}')
    with pytest.raises(ValueError) as e:
        load_coco_json_checked(str(bad), str(tmp_path))
    msg = str(e.value)
    assert str(bad) in msg and "line 2" in msg and "column" in msg


def test_missing_json_and_missing_sections(tmp_path):
    with pytest.raises(DataError, match="nope.json"):
        load_coco_json_checked(str(tmp_path / "nope.json"), str(tmp_path))
    p = tmp_path / "x.json"
    p.write_text('{"images": [], "categories": []}')
    with pytest.raises(ValueError, match="missing list 'annotations'"):
        load_coco_json_checked(str(p), str(tmp_path))


def test_bad_records_name_the_record(tmp_path):
    img = [{"id": 1, "file_name": "a.png", "height": 10, "width": 10}]
    j = write_coco(tmp_path, img, [{"image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]},
                                    {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5]},
                                    {"image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(DataError) as e:
        load_coco_json_checked(str(j), str(tmp_path))
    msg = str(e.value)
    assert "2 annotation(s) use a category id that is not in 'categories'" in msg
    assert "annotations[0] (id=1, image_id=1) has category_id 4" in msg and "annotations[2] (id=3" in msg
    assert "known ids: 2 (red), 7 (blue)" in msg
    j = write_coco(tmp_path, img, [{"image_id": 9, "category_id": 2, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(ValueError, match=r"annotations\[0\].*image_id 9"):
        load_coco_json_checked(str(j), str(tmp_path))
    j = write_coco(tmp_path, img, [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 5]}])
    with pytest.raises(ValueError, match=r"annotations\[0\].*bbox"):
        load_coco_json_checked(str(j), str(tmp_path))
    j = write_coco(tmp_path, [{"id": 1, "file_name": "a.png"}], [])
    with pytest.raises(ValueError, match=r"images\[0\] lacks \['height', 'width'\]"):
        load_coco_json_checked(str(j), str(tmp_path))


def test_noncontiguous_category_ids_map_to_contiguous(tmp_path):
    j, root = make_tiny_coco(tmp_path, num_images=2)
    name = unique_name("cats")
    dicts = load_coco_json_checked(str(j), str(root), name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["red", "blue"]
    assert meta.thing_dataset_id_to_contiguous_id == {2: 0, 7: 1}
    assert {a["category_id"] for d in dicts for a in d["annotations"]} <= {0, 1}
    assert dicts[0]["file_name"] == str(root / "0.png") and dicts[0]["image_id"] == 100


def test_boxes_clipped_dropped_crowd_excluded_empty_kept(tmp_path, caplog):
    imgs = [{"id": i, "file_name": f"{i}.png", "height": 40, "width": 50} for i in (1, 2, 3)]
    anns = [
        {"image_id": 1, "category_id": 2, "bbox": [40, 30, 20, 20]},  # sticks out -> clipped to 10x10
        {"image_id": 1, "category_id": 2, "bbox": [5, 5, 0, 9]},  # zero area -> dropped
        {"image_id": 1, "category_id": 7, "bbox": [60, 50, 5, 5]},  # fully outside -> dropped
        {"image_id": 2, "category_id": 7, "bbox": [1, 1, 10, 10], "iscrowd": 1},  # crowd -> excluded
        {"image_id": 2, "category_id": 7, "bbox": [2, 3, 4, 5]},  # fine
    ]
    j = write_coco(tmp_path, imgs, anns)
    name = register_coco_format(unique_name("messy"), str(j), str(tmp_path))
    with caplog.at_level(logging.INFO, logger="mlla_rtdetr.data"):
        dicts = get_dataset_dicts(name, check_images=False)  # no image files: annotations only
    _, stats = sanitize_dataset_dicts(DatasetCatalog.get(name), name, return_stats=True)
    assert stats == {
        "boxes clipped to the image": 1,
        "zero-area or outside-image boxes dropped": 2,
        "crowd boxes excluded": 1,
        "images without boxes (kept)": 1,
    }
    assert "crowd boxes excluded" in caplog.text and name in caplog.text
    assert len(dicts) == 3  # image 3 has no boxes and stays as a negative
    assert dicts[0]["annotations"][0]["bbox"] == [40.0, 30.0, 10.0, 10.0]
    assert [a["bbox"] for a in dicts[1]["annotations"]] == [[2.0, 3.0, 4.0, 5.0]]
    assert len(get_dataset_dicts(name, filter_empty=True, check_images=False)) == 2


def test_missing_image_at_load_time_and_at_map_time(tmp_path):
    j, root = make_tiny_coco(tmp_path, num_images=3)
    (root / "1.png").unlink()
    name = register_coco_format(unique_name("missing"), str(j), str(root))
    with pytest.raises(DataError) as e:
        get_dataset_dicts(name)  # check_images=True by default
    assert "1 of 3 image files do not exist" in str(e.value)
    assert "1.png" in str(e.value) and "image_id=101" in str(e.value)
    dicts = get_dataset_dicts(name, check_images=False)  # without the check, the mapper reports it
    with pytest.raises(FileNotFoundError) as e:
        RTDETRDatasetMapper(is_train=True, image_size=32)(dicts[1])
    assert "1.png" in str(e.value) and "image_id=101" in str(e.value)


def test_corrupt_image_and_size_mismatch_name_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    make_image(tmp_path / "ok.png", (20, 30))
    mapper = RTDETRDatasetMapper(is_train=False, image_size=16)
    with pytest.raises(OSError, match="bad.png"):
        mapper({"file_name": str(tmp_path / "bad.png"), "image_id": 5, "height": 20, "width": 30})
    with pytest.raises(DataError, match=r"ok.png.*image_id=6.*30x20.*says 31x20"):
        mapper({"file_name": str(tmp_path / "ok.png"), "image_id": 6, "height": 20, "width": 31})


def test_image_modes_read_as_rgb_uint8(tmp_path):
    rgb = make_image(tmp_path / "rgb.png", (6, 8), seed=3)
    # grayscale
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "gray.png")
    out = read_image_rgb(str(tmp_path / "gray.png"))
    assert out.dtype == torch.uint8 and out.shape == (3, 6, 8)
    assert torch.equal(out[0], torch.from_numpy(rgb[..., 0])) and torch.equal(out[1], out[2])
    # RGBA: alpha dropped, colour kept
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 77, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert torch.equal(read_image_rgb(str(tmp_path / "rgba.png")), torch.from_numpy(rgb).permute(2, 0, 1))
    # 16-bit grayscale: scaled, not clipped
    g16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1365)
    Image.fromarray(g16, "I;16").save(tmp_path / "g16.png")
    out = read_image_rgb(str(tmp_path / "g16.png"))
    assert torch.equal(out[0], torch.from_numpy(np.rint(g16 / 257.0).astype(np.uint8)))
    assert out[0].max() == 250 and out[0].min() == 0  # 47 * 1365 / 257 = 249.6
    # palette
    Image.fromarray(rgb, "RGB").convert("P").save(tmp_path / "pal.png")
    assert read_image_rgb(str(tmp_path / "pal.png")).shape == (3, 6, 8)


def test_exif_rotation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # white band on the left of the stored (landscape) pixels
    img = Image.fromarray(arr, "RGB")
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    out = read_image_rgb(str(tmp_path / "rot.jpg"))
    assert out.shape == (3, 20, 10)  # displayed as portrait
    assert out[:, :5].float().mean() > 200 and out[:, -5:].float().mean() < 50  # band now on top
    mapper = RTDETRDatasetMapper(is_train=False, image_size=None)
    o = mapper({"file_name": str(tmp_path / "rot.jpg"), "image_id": 1, "height": 20, "width": 10})
    assert o["image"].shape == (3, 20, 10)


def test_register_coco_format_idempotent_and_conflicts(tmp_path):
    j, root = make_tiny_coco(tmp_path, num_images=2)
    name = unique_name("reg")
    assert register_coco_format(name, str(j), str(root)) == name
    assert register_coco_format(name, str(j), str(root)) == name
    with pytest.raises(ConfigError, match="already registered"):
        register_coco_format(name, str(j), str(tmp_path))
    with pytest.raises(DataError, match="not registered"):
        get_dataset_dicts(unique_name("unknown"))
    with pytest.raises(DataError, match="DETECTRON2_DATASETS"):
        name2 = register_coco_format(unique_name("nojson"), str(tmp_path / "absent.json"), str(root))
        get_dataset_dicts(name2)


def test_coco_config_takes_any_dataset_by_overrides(tmp_path):
    """A new COCO-format dataset through command-line style overrides only (no code)."""
    j, root = make_tiny_coco(tmp_path, num_images=6)
    jv, rootv = make_tiny_coco(tmp_path / "val", num_images=3)
    tr, va = unique_name("mytrain"), unique_name("myval")
    cfg = load_config("common/data/coco_detection.py", [
        f"dataloader.train.dataset.names={tr}", f"dataloader.train.dataset.json_file={j}",
        f"dataloader.train.dataset.image_root={root}", f"dataloader.test.dataset.names={va}",
        f"dataloader.test.dataset.json_file={jv}", f"dataloader.test.dataset.image_root={rootv}",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0", "dataloader.train.mapper.image_size=[32,32]",
        "dataloader.train.multiscale_sizes=null",
    ])
    evaluator = instantiate(cfg.dataloader.evaluator)  # registers the test set by itself
    assert evaluator._metadata.thing_classes == ["red", "blue"]
    train = instantiate(cfg.dataloader.train)
    assert train.iters_per_epoch == 3
    batch = next(iter(train))
    assert len(batch) == 2 and batch[0]["image"].shape == (3, 32, 32)
    test = instantiate(cfg.dataloader.test)
    out = [d for b in test for d in b]
    assert len(out) == 3 and out[0]["image"].shape == (3, 640, 640) and (out[0]["height"], out[0]["width"]) == (48, 64)
    cfg.model = {"num_classes": 2}
    assert check_num_classes(cfg, classes={"train": dataset_classes(tr), "test": dataset_classes(va)}) == 2
    assert check_num_classes(cfg) == 2  # read from the datasets the config names


def test_check_num_classes_prints_the_overrides_to_add(tmp_path):
    j, root = make_tiny_coco(tmp_path, num_images=1)
    name = register_coco_format(unique_name("nc"), str(j), str(root))
    classes = {"dataloader.train.dataset": dataset_classes(name)}
    cfg = OmegaConf.create({"model": {"num_classes": 80, "criterion": {"num_classes": "${..num_classes}"}},
                            "dataloader": {"train": {"dataset": {"names": name}}}})
    for given in (classes, None):  # the classes prepare_data found, or read from the config's datasets
        with pytest.raises(ConfigError) as e:
            check_num_classes(cfg, classes=given)
        msg = str(e.value)
        assert "model.num_classes=80, model.criterion.num_classes=80" in msg
        assert "dataloader.train.dataset has 2 classes (red, blue)" in msg
        assert msg.endswith("Add this override:\n  model.num_classes=2")  # the criterion follows by interpolation
    cfg.model.criterion.num_classes = 3  # written out: needs its own override
    with pytest.raises(ConfigError) as e:
        check_num_classes(cfg, classes=classes)
    assert str(e.value).endswith("Add these overrides:\n  model.num_classes=2 model.criterion.num_classes=2")
    cfg.model.num_classes = cfg.model.criterion.num_classes = 2
    assert check_num_classes(cfg, classes=classes) == 2
    with pytest.raises(DataError, match=r"disagree on the classes: a has \['red', 'blue'\], b has \['x'\]"):
        check_num_classes(cfg, classes={"a": ["red", "blue"], "b": ["x"]})
    assert check_num_classes(OmegaConf.create({"model": {"num_classes": 5}}),
                             classes={"t": dataset_classes("synthetic_shapes_val")}) == 5
