"""Train loader: determinism (seed, workers), exact resume, sharding, multi-scale, stop-aug epoch."""
import pytest
import torch

from mlla_rtdetr.data import RTDETRDatasetMapper, TrainLoader, get_dataset_dicts, register_coco_format
from mlla_rtdetr.errors import ConfigError

from data_utils import make_tiny_coco, unique_name


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    j, imgs = make_tiny_coco(root, num_images=14, size=(40, 52))
    return get_dataset_dicts(register_coco_format(unique_name("loader"), str(j), str(imgs)))


class CountingMapper(RTDETRDatasetMapper):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def __call__(self, d, **kw):
        self.calls.append(d["image_id"])
        return super().__call__(d, **kw)


def make_loader(dicts, **kw):
    mapper = kw.pop("mapper", None) or RTDETRDatasetMapper(is_train=True, image_size=32)
    args = dict(total_batch_size=4, multiscale_sizes=[24, 32, 40], seed=3, rank=0, world_size=1)
    args.update(kw)
    return TrainLoader(dicts, mapper, **args)


def take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for ba, bb in zip(a, b):
        assert [d["image_id"] for d in ba] == [d["image_id"] for d in bb]
        for da, db in zip(ba, bb):
            assert torch.equal(da["image"], db["image"])
            assert torch.equal(da["instances"].gt_boxes.tensor, db["instances"].gt_boxes.tensor)
            assert torch.equal(da["instances"].gt_classes, db["instances"].gt_classes)


def test_iters_per_epoch_and_epoch_coverage(dicts):
    loader = make_loader(dicts)
    assert loader.iters_per_epoch == 14 // 4 == 3 and loader.num_samples == 14
    epoch0 = [i for it in range(3) for i in loader.batch_indices(it)]
    assert len(set(epoch0)) == 12  # drop_last: 2 images wait for the next epoch
    epoch1 = [i for it in range(3, 6) for i in loader.batch_indices(it)]
    assert epoch0 != epoch1  # reshuffled by epoch
    assert make_loader(dicts, seed=4).batch_indices(0) != loader.batch_indices(0)
    assert make_loader(dicts).batch_indices(4) == loader.batch_indices(4)  # pure function of (seed, it)


def test_same_result_whatever_num_workers(dicts):
    a = take(make_loader(dicts, num_workers=0), 3)
    b = take(make_loader(dicts, num_workers=2), 3)
    assert_same_batches(a, b)
    sizes = {tuple(d["image"].shape[-2:]) for batch in a for d in batch}
    assert sizes <= {(24, 24), (32, 32), (40, 40)}


def test_exact_resume_without_loading_skipped_samples(dicts):
    full = take(make_loader(dicts), 7)
    mapper = CountingMapper(is_train=True, image_size=32)
    resumed_loader = make_loader(dicts, mapper=mapper)
    resumed_loader.set_start_iter(4)
    resumed = take(resumed_loader, 3)
    assert_same_batches(full[4:7], resumed)
    assert len(mapper.calls) == 3 * 4  # the 16 skipped samples were never read


def test_two_ranks_take_disjoint_halves(dicts):
    r0 = make_loader(dicts, rank=0, world_size=2)
    r1 = make_loader(dicts, rank=1, world_size=2)
    single = make_loader(dicts)
    assert r0.batch_size == r1.batch_size == 2
    for it in range(6):
        a, b = r0.batch_indices(it), r1.batch_indices(it)
        assert len(a) == len(b) == 2 and not set(a) & set(b)
        assert a + b == single.batch_indices(it)  # same global batch as on one process
    b0, b1 = take(r0, 1)[0], take(r1, 1)[0]
    assert {d["image_id"] for d in b0}.isdisjoint({d["image_id"] for d in b1})
    # both ranks use the same multi-scale size in an iteration
    assert b0[0]["image"].shape == b1[0]["image"].shape
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        make_loader(dicts, total_batch_size=3, world_size=2)


def test_multiscale_per_iteration_and_stop_aug_epoch(dicts):
    loader = make_loader(dicts, stop_aug_epoch=2)
    sizes = [loader.image_size(it) for it in range(6)]
    assert all(s in {(24, 24), (32, 32), (40, 40)} for s in sizes)
    assert len(set(make_loader(dicts).image_size(it) for it in range(30))) == 3
    assert [loader.image_size(it) for it in range(6)] == sizes  # deterministic
    # epoch 2 starts at iteration 6: no multi-scale, no strong augmentation
    assert loader.image_size(6) is None and loader.image_size(9) is None
    keys = loader.batch_keys(6)
    assert all(k[1] == 2 and k[2] is None and k[3] is False for k in keys)
    assert all(k[3] is True for k in loader.batch_keys(5))
    loader.set_start_iter(6)
    batch = take(loader, 1)[0]
    assert all(d["image"].shape == (3, 32, 32) for d in batch)  # mapper's image_size
    # after the stop epoch the pipeline is exactly flip + resize, seeded per (seed, epoch, index)
    from mlla_rtdetr.data import sample_seed
    mapper = RTDETRDatasetMapper(is_train=True, image_size=32)
    for k, d in zip(keys, batch):
        torch.manual_seed(sample_seed(3, 2, k[0]))
        ref = mapper(dicts[k[0]], strong_augment=False)
        assert torch.equal(ref["image"], d["image"])


def test_bad_arguments(dicts):
    with pytest.raises(ConfigError, match="fewer than dataloader.train.total_batch_size=4(.|\n)*at most"):
        make_loader(dicts[:3])
    with pytest.raises(ConfigError, match="multi-scale"):
        make_loader(dicts, multiscale_sizes=[])
    with pytest.raises(ConfigError, match="max_bad_image_share must be in"):
        make_loader(dicts, max_bad_image_share=2)
    with pytest.raises(ValueError, match="start_iter"):
        make_loader(dicts).set_start_iter(-1)
