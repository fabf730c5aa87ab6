"""DEIM's "Dense O2O" data pipeline against the official one (ShihuaHuang95/DEIM a9aa4ad,
``deim_rtdetrv2/deim_r18vd_120e_coco.yml``) on the shared fixture
``deim_rtdetrv2_r18vd.dense_o2o_pipeline.pt`` (tests/fixtures/parity/README.md, "DEIM, D-FINE
and DEIM-D-FINE").

Everything is built from ``configs/common/data/coco_detection_dense_o2o.py`` (the data base of the
DEIM recipes): the train loader binds the four fixture images as the dataset Mosaic draws from,
its mapper runs the 4-stage policy per sample and its batch augmentation MixUp + multi-scale per
batch. As the fixture prescribes, ``random.seed(s); torch.manual_seed(s)`` precede each sample
and each batch. Binding: identical uint8 pixels (sha256), identical collated float32 batches
(sha256), identical labels, boxes <= 1e-5. Every op is integer / exactly rounded (PIL resize,
affine and photometric ops, nearest interpolation, one float32 multiply and add for MixUp), so
the hashes hold on every ISA (checked with ATEN_CPU_CAPABILITY=avx2 / default).

The fixture's input recipe (``parity_state.make_pipeline_image``) is not portable itself:
``torch.linspace`` rounds differently in its vectorized (AVX2 / AVX-512) and scalar kernels, which
changes a few pixels of image 2 on a CPU without AVX2. The inputs are therefore built with the
linspace values of the CPU that made the fixture (``data_utils.portable_pipeline_image``); every
other step of the recipe is exactly rounded.
"""
import hashlib
import random

import pytest
import torch
from detectron2.config import instantiate
from torchvision.ops import box_convert

from data_utils import pipeline_fixture_dicts

from mlla_rtdetr.config import get_config
from mlla_rtdetr.data import DenseO2OBatchAugment, DenseO2ODatasetMapper, Mosaic, multiscale_sizes

DATA_CONFIG = "common/data/coco_detection_dense_o2o.py"


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _normalized_cxcywh(instances) -> torch.Tensor:
    """Pixel XYXY -> normalized cxcywh, the official ConvertBoxes order (as the model's targets)."""
    h, w = instances.image_size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    return box_convert(instances.gt_boxes.tensor.float(), "xyxy", "cxcywh") / scale


@pytest.fixture(scope="module")
def dense_o2o(parity_dir, tmp_path_factory):
    fixture = torch.load(parity_dir / "fixtures" / "deim_rtdetrv2_r18vd.dense_o2o_pipeline.pt", weights_only=True)
    root = tmp_path_factory.mktemp("dense_o2o_images")
    dicts = pipeline_fixture_dicts(fixture["spec"]["images"], root)  # same pixels on every CPU
    train = get_config(DATA_CONFIG).dataloader.train
    train.dataset = dicts  # the dataset Mosaic draws from holds exactly the four images (fixture spec)
    train.total_batch_size = 4
    train.num_workers = 0
    train.shuffle = False
    loader = instantiate(train)
    samples = {}
    for case in fixture["cases"]:
        random.seed(case["seed"])
        torch.manual_seed(case["seed"])
        samples[case["epoch"], case["seed"], case["image_index"]] = loader.mapper(
            dicts[case["image_index"]], epoch=case["epoch"]
        )
    return fixture, dicts, loader, samples


def test_recipe_is_the_official_dense_o2o(dense_o2o):
    fixture, _, loader, _ = dense_o2o
    spec = fixture["spec"]
    mapper, batch = loader.mapper, loader.batch_augment
    assert isinstance(mapper, DenseO2ODatasetMapper) and isinstance(batch, DenseO2OBatchAugment)
    assert list(mapper.policy_epochs) == spec["policy"]["epoch"] == [4, 64, 117]
    assert mapper.mosaic_prob == spec["mosaic_prob"] == 0.5
    ops = {op["type"]: op for op in spec["train_ops"]}
    m = ops["Mosaic"]
    assert (m["probability"], m["use_cache"]) == (1.0, False)  # always when chosen, partners from the dataset
    assert mapper.mosaic.resize.size == [m["output_size"]]
    affine = mapper.mosaic.affine
    assert list(affine.degrees) == [-m["rotation_range"], m["rotation_range"]]
    assert list(affine.translate) == m["translation_range"] and list(affine.scale) == m["scaling_range"]
    assert affine.fill == m["fill_value"] == 0
    aug = mapper.aug_kwargs
    assert aug["photometric_p"] == ops["RandomPhotometricDistort"]["p"]
    assert aug["iou_crop_p"] == ops["RandomIoUCrop"]["p"] and aug["zoom_out_fill"] == ops["RandomZoomOut"]["fill"]
    assert mapper.image_size == tuple(ops["Resize"]["size"])
    c = spec["collate"]
    assert batch.mixup_prob == c["mixup_prob"] and list(batch.mixup_epochs) == c["mixup_epochs"]
    assert batch.multiscale_stop_epoch == c["stop_epoch"]
    # official generate_scales(640, 3): [480..608] + [640] * 3 + [800, 768, ..., 672]
    assert batch.multiscale_sizes == [480, 512, 544, 576, 608, 640, 640, 640, 800, 768, 736, 704, 672]
    assert loader.multiscale_sizes is None and loader.stop_aug_epoch is None


def test_policy_stages_and_pipelines():
    mapper = DenseO2ODatasetMapper(image_size=(32, 32), policy_epochs=(4, 64, 117))
    assert [mapper.stage(e) for e in (0, 3, 4, 63, 64, 116, 117, 500)] == [
        "none", "none", "mosaic", "mosaic", "strong", "strong", "none", "none"]
    names = lambda kind: [type(t).__name__ for t in mapper.pipeline(None, kind).transforms]  # noqa: E731
    assert names("mosaic") == ["Mosaic", "RandomPhotometricDistort", "SanitizeBoundingBoxes",
                               "RandomHorizontalFlip", "Resize", "SanitizeBoundingBoxes"]
    assert "RandomZoomOut" in names("strong") and "Mosaic" not in names("strong")
    assert names("none") == ["RandomHorizontalFlip", "Resize", "SanitizeBoundingBoxes"]
    with pytest.raises(ValueError, match="policy_epochs"):
        DenseO2ODatasetMapper(image_size=32, policy_epochs=(64, 4, 117))
    with pytest.raises(RuntimeError, match="bound to the dataset"):
        Mosaic()({})


def test_samples_equal_official(dense_o2o):
    fixture, _, _, samples = dense_o2o
    seen = {"mosaic_whole": 0, "boxes": 0}
    shapes = set()
    for case in fixture["cases"]:
        where = f"image {case['image_index']} epoch {case['epoch']} seed {case['seed']}"
        out = samples[case["epoch"], case["seed"], case["image_index"]]
        image = out["image"]
        assert image.dtype == torch.uint8 and list(image.shape) == case["image_shape"], where
        assert _sha256(image) == case["image_u8_sha256"], where
        if "image_u8" in case:
            assert torch.equal(image, case["image_u8"].to(torch.uint8)), where
            seen["mosaic_whole"] += 1
        assert torch.equal(out["instances"].gt_classes, case["labels"].long()), where
        boxes = _normalized_cxcywh(out["instances"])
        assert boxes.shape == case["boxes_cxcywh_norm"].shape, where
        if len(boxes):
            assert (boxes - case["boxes_cxcywh_norm"]).abs().max() <= 1e-5, where
        seen["boxes"] += len(boxes)
        shapes.add(len(case["labels"]))
    assert len(fixture["cases"]) == 128 and seen["mosaic_whole"] == 6 and seen["boxes"] > 300
    assert max(shapes) > 4  # some samples are mosaics of several images' boxes


def test_batches_equal_official(dense_o2o):
    fixture, _, loader, samples = dense_o2o
    augment = loader.batch_augment
    mixed = resized = 0
    checked_call = set()
    for batch in fixture["batches"]:
        where = f"batch epoch {batch['epoch']} seed {batch['seed']}"
        items = [samples[batch["epoch"], batch["seed"], i] for i in range(4)]
        images = torch.stack([s["image"] for s in items]).float() / 255.0
        targets = [{"boxes": _normalized_cxcywh(s["instances"]), "labels": s["instances"].gt_classes} for s in items]
        random.seed(batch["seed"])
        torch.manual_seed(batch["seed"])
        got, got_targets, size = augment.apply(images, targets, batch["epoch"])
        assert list(got.shape) == batch["images_shape"], where
        assert _sha256(got) == batch["images_float32_sha256"], where
        for t, e in zip(got_targets, batch["targets"]):
            assert torch.equal(t["labels"], e["labels"].long()), where
            assert t["boxes"].shape == e["boxes"].shape and (
                len(e["boxes"]) == 0 or (t["boxes"] - e["boxes"]).abs().max() <= 1e-5), where
            assert ("mixup" in t) == ("mixup" in e), where
            if "mixup" in e:
                assert torch.equal(t["mixup"], e["mixup"]), where
        is_mixed = "mixup" in got_targets[0]
        mixed += is_mixed
        resized += size is not None
        if (is_mixed, size is not None) in checked_call:
            continue
        checked_call.add((is_mixed, size is not None))

        # the loader's path (samples in, samples out; once per kind of batch) gives the same
        # pixels and the same boxes in pixels
        random.seed(batch["seed"])
        out = augment(items, batch["epoch"])
        for o, img, e in zip(out, got, batch["targets"]):
            if "mixup" in got_targets[0]:
                assert o["image"].dtype == torch.float32 and torch.equal(o["image"], img * 255.0), where
                assert torch.equal(o["instances"].gt_mixup_weights, e["mixup"]), where
            else:
                assert o["image"].dtype == torch.uint8 and torch.equal(o["image"].float() / 255.0, img), where
            assert o["instances"].image_size == tuple(img.shape[-2:]), where
            if len(e["boxes"]):
                assert (_normalized_cxcywh(o["instances"]) - e["boxes"]).abs().max() <= 1e-5, where
    assert len(fixture["batches"]) == 32 and mixed >= 3 and 0 < resized < 32
    assert checked_call == {(True, True), (False, True), (False, False)}


def test_loader_iterations_are_reproducible_and_resume(dense_o2o):
    """The loader's own seeding (not the fixture's): same batches on a rerun and from a resumed
    start, Mosaic / MixUp / multi-scale active in epoch 4."""
    _, dicts, _, _ = dense_o2o
    train = get_config(DATA_CONFIG).dataloader.train
    train.dataset = dicts
    train.total_batch_size = 2
    train.num_workers = 0
    train.seed = 3
    train.mapper.image_size = (64, 64)
    train.mapper.mosaic_output_size = 32
    train.mapper.policy_epochs = [1, 3, 4]
    train.batch_augment.mixup_epochs = [1, 3]
    train.batch_augment.multiscale_sizes = multiscale_sizes(64, 32, 96, 32, 1, upper_descending=True)

    def run(start, n):
        loader = instantiate(train)
        loader.set_start_iter(start)
        it = iter(loader)
        return [next(it) for _ in range(n)]

    a, b = run(0, 6), run(4, 2)
    for x, y in zip(a[4:], b):
        for s, t in zip(x, y):
            assert s["image"].dtype == t["image"].dtype and torch.equal(s["image"], t["image"])
            assert torch.equal(s["instances"].gt_boxes.tensor, t["instances"].gt_boxes.tensor)
    assert {tuple(s["image"].shape) for batch in a for s in batch} <= {(3, n, n) for n in (32, 64, 96)}
    assert a[0][0]["image"].dtype == torch.uint8  # epoch 0: no MixUp
