"""Images that cannot be read: replaced deterministically in training (same on every run, resume and
worker count), skipped and counted at evaluation."""
import json

import pytest
import torch

from detectron2.structures import Boxes, Instances

from mlla_rtdetr.data import RTDETRDatasetMapper, TrainLoader, build_test_loader, get_dataset_dicts, register_coco_format
from mlla_rtdetr.data.loader import MAX_REPLACEMENTS, replacement
from mlla_rtdetr.data import FastCOCOEvaluator
from mlla_rtdetr.errors import DataError

from data_utils import make_tiny_coco, unique_name

BAD = {3: "truncated", 7: "empty", 9: "not an image"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    j, imgs = make_tiny_coco(root, num_images=12, size=(40, 52))
    coco = json.loads(j.read_text())
    for a in coco["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]  # COCO evaluation reads it
    j.write_text(json.dumps(coco))
    data = (imgs / "3.png").read_bytes()
    (imgs / "3.png").write_bytes(data[: len(data) // 2])
    (imgs / "7.png").write_bytes(b"")
    (imgs / "9.png").write_text("<html>404 Not Found</html>")
    name = register_coco_format(unique_name("faults"), str(j), str(imgs))
    return get_dataset_dicts(name), imgs, j


def loader(dicts, **kw):
    args = dict(total_batch_size=4, multiscale_sizes=[24, 32], seed=5, rank=0, world_size=1)
    args.update(kw)
    return TrainLoader(dicts, RTDETRDatasetMapper(is_train=True, image_size=32), **args)


def take(ld, n):
    it = iter(ld)
    return [next(it) for _ in range(n)]


def signature(batches):
    return [[(d["image_id"], d["image"].sum().item(), d["instances"].gt_boxes.tensor.sum().item()) for d in b]
            for b in batches]


def test_unreadable_images_replaced_the_same_way_on_every_run(dataset):
    dicts, imgs, _ = dataset
    bad_files = {str(imgs / f"{i}.png") for i in BAD}
    a = loader(dicts)
    batches = take(a, 6)  # two epochs: every image is visited twice
    reported = a.take_bad_images()
    assert sorted(f for f, _ in reported) == sorted(list(bad_files) * 2)
    assert all(f in reason for f, reason in reported)  # the reason names the file
    assert a.take_bad_images() == []  # reported once per occurrence
    assert all(len(b) == 4 for b in batches)
    assert not {d["file_name"] for b in batches for d in b} & bad_files
    # the replacement is the one the seed names, with its own augmentation seed
    it = next(i for i in range(6) if set(a.batch_indices(i)) & set(BAD))
    pos, bad_index = next((p, i) for p, i in enumerate(a.batch_indices(it)) if i in BAD)
    index, _ = replacement(5, a.epoch_of(it), bad_index, 0, len(dicts))
    if index not in BAD:
        assert batches[it][pos]["image_id"] == dicts[index]["image_id"]
    # same batches with worker processes, and from a resumed start
    b = loader(dicts, num_workers=2)
    assert signature(take(b, 6)) == signature(batches)
    assert sorted(b.take_bad_images()) == sorted(reported)
    c = loader(dicts)
    c.set_start_iter(3)
    assert signature(take(c, 3)) == signature(batches[3:])
    assert signature(take(loader(dicts, seed=6), 6)) != signature(batches)


def test_gives_up_when_replacements_keep_failing(tmp_path):
    j, imgs = make_tiny_coco(tmp_path, num_images=4, size=(20, 20))
    for p in imgs.iterdir():
        p.write_bytes(b"")
    dicts = get_dataset_dicts(register_coco_format(unique_name("allbad"), str(j), str(imgs)))
    with pytest.raises(DataError, match=rf"{MAX_REPLACEMENTS + 1} images in a row cannot be read"):
        take(loader(dicts, multiscale_sizes=None), 1)


def test_test_loader_skips_unreadable_images(dataset, caplog):
    dicts, imgs, _ = dataset
    test = build_test_loader(dicts, RTDETRDatasetMapper(is_train=False, image_size=32), batch_size=4)
    assert len(test) == 3 and test.num_images == 12
    seen = [d["image_id"] for b in test for d in b]
    assert seen == [d["image_id"] for i, d in enumerate(dicts) if i not in BAD]
    assert sorted(test.bad_images) == sorted(str(imgs / f"{i}.png") for i in BAD)
    logged = caplog.text.count("Skipping an image that cannot be read")
    list(test)  # a second pass: same skips, logged once per process
    assert caplog.text.count("Skipping an image that cannot be read") == logged == 3


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_evaluation_counts_and_leaves_out_skipped_images(dataset, backend):
    dicts, imgs, json_file = dataset
    name = register_coco_format(unique_name("evalskip"), str(json_file), str(imgs))
    get_dataset_dicts(name, check_images=False)  # sets the category id mapping, as the test loader does
    ev = FastCOCOEvaluator(name, distributed=False, backend=backend)
    ev.reset()
    for i, d in enumerate(dicts):
        if i in BAD:
            continue  # the test loader skipped it: no prediction entry
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for a in d["annotations"]]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.ones(len(boxes))
        inst.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
        ev.process([{"image_id": d["image_id"], "height": d["height"], "width": d["width"]}], [{"instances": inst}])
    results = ev.evaluate()
    assert results["images"] == {"evaluated": 9, "skipped": 3}
    assert results["bbox"]["AP"] == pytest.approx(100.0)  # the skipped images' boxes are not misses

