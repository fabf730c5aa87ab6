"""Deterministic, epoch-aware, resumable train loader and the sharded test loader.

Everything random is a pure function of the seed:

* epoch ``e`` visits the dataset in the order ``permutation(seed, e)``; global batch ``b`` of
  the epoch is ``order[b*T:(b+1)*T]`` (T = total batch size, last partial batch dropped) and
  rank ``r`` takes the ``r``-th contiguous slice of it;
* the augmentation of dataset index ``i`` in epoch ``e`` runs under ``torch.manual_seed(f(seed, e, i))``
  (inside ``torch.random.fork_rng``), so it does not depend on worker count or process;
* Python's ``random`` is seeded with the same per-sample seed (DEIM's Mosaic draws from it);
* the multi-scale size of iteration ``it`` is drawn from ``(seed, it)`` (same on all ranks);
* an optional ``batch_augment`` (DEIM's MixUp / multi-scale collate) runs in the workers on each
  rank's batch of iteration ``it`` under torch and Python seeds derived from ``(seed, it, rank)``;
* an image that cannot be read (missing since the start, truncated, empty, not an image, or of
  another size than its record says) is replaced by the image ``r(seed, e, i, attempt)`` with
  the augmentation seed of the same key, so the replacement is the same on every run, resume
  and worker count. The loader reports the image (path and reason) to the trainer, which logs
  it once, counts it in the metrics and stops the run past ``max_bad_image_share``.

Hence iteration ``it`` of a run is reproduced exactly by a loader started at ``it``
(``set_start_iter``), without touching the samples before it.

The test loader skips images that cannot be read (each is logged once with its path); the COCO
evaluator then evaluates the images that were read and says how many.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata

from detectron2.data import build_detection_test_loader
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm

from ..errors import ConfigError, DataError
from .checks import listing

__all__ = [
    "TrainLoader",
    "TestLoader",
    "build_train_loader",
    "build_test_loader",
    "sample_seed",
    "batch_seed",
    "replacement",
    "BAD_IMAGE_ERRORS",
]

logger = logging.getLogger(__name__)

# Stream tags keep the uses of the seed independent.
_TAG_ORDER, _TAG_SCALE, _TAG_SAMPLE, _TAG_REPLACE, _TAG_BATCH = 0, 1, 2, 3, 4

BAD_IMAGE_ERRORS = (OSError, DataError)
"""What the mapper raises for an image it cannot use (missing, undecodable, size mismatch)."""

MAX_REPLACEMENTS = 16
"""Unreadable replacements in a row after which the loader gives up on a sample."""

_BAD_KEY = "_bad_images"  # sample field carrying [(file_name, reason)] from the workers
_ITER_KEY = "_iteration"  # sample field carrying (epoch, iteration) to the batch augmentation

# (index, epoch, size, strong_augment, iteration)
SampleKey = Tuple[int, int, Optional[Tuple[int, int]], bool, int]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Torch seed of the augmentation of dataset ``index`` in ``epoch``."""
    state = np.random.SeedSequence([seed, _TAG_SAMPLE, epoch, index]).generate_state(1, np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def batch_seed(seed: int, iteration: int, rank: int) -> int:
    """Torch / Python seed of the batch augmentation of ``rank``'s batch of ``iteration``."""
    state = np.random.SeedSequence([seed, _TAG_BATCH, iteration, rank]).generate_state(1, np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


class _seeded_rngs:
    """Context: torch's CPU generator and Python's ``random`` seeded with ``seed``, both restored
    on exit (``torch.random.fork_rng`` for the first)."""

    def __init__(self, seed: int):
        self.seed = seed
        self._fork = torch.random.fork_rng(devices=[])

    def __enter__(self):
        self._py_state = random.getstate()
        self._fork.__enter__()
        torch.manual_seed(self.seed)
        random.seed(self.seed)

    def __exit__(self, *exc):
        random.setstate(self._py_state)
        return self._fork.__exit__(*exc)


def replacement(seed: int, epoch: int, index: int, attempt: int, num_samples: int) -> Tuple[int, int]:
    """(dataset index, augmentation seed) replacing the ``attempt``-th unreadable image met for
    dataset ``index`` in ``epoch``."""
    state = np.random.SeedSequence([seed, _TAG_REPLACE, epoch, index, attempt]).generate_state(2, np.uint64)
    return int(state[0] % np.uint64(num_samples)), int(state[1]) & ((1 << 63) - 1)


class _MappedDataset(torchdata.Dataset):
    """Dataset dicts + mapper, indexed by ``SampleKey`` (the augmentation RNG is set per key);
    unreadable images are replaced deterministically (module docstring)."""

    def __init__(self, dicts: Sequence[Dict[str, Any]], mapper, seed: int, tag_iteration: bool = False):
        self._dicts = DatasetFromList(list(dicts), copy=False, serialize=True)
        self._mapper = mapper
        self._seed = seed
        self._takes_epoch = bool(getattr(mapper, "takes_epoch", False))
        self._tag_iteration = tag_iteration

    def __len__(self) -> int:
        return len(self._dicts)

    def __getitem__(self, key: SampleKey) -> Dict[str, Any]:
        index, epoch, size, strong, it = key
        candidate, aug_seed = index, sample_seed(self._seed, epoch, index)
        bad: List[Tuple[str, str]] = []
        extra = {"epoch": epoch} if self._takes_epoch else {}
        for attempt in range(MAX_REPLACEMENTS + 1):
            record = self._dicts[candidate]
            try:
                with _seeded_rngs(aug_seed):
                    sample = self._mapper(record, image_size=size, strong_augment=strong, **extra)
            except BAD_IMAGE_ERRORS as e:
                bad.append((record["file_name"], str(e)))
                candidate, aug_seed = replacement(self._seed, epoch, index, attempt, len(self))
                continue
            if bad:
                sample[_BAD_KEY] = bad
            if self._tag_iteration:
                sample[_ITER_KEY] = (epoch, it)
            return sample
        raise DataError(
            f"{len(bad)} images in a row cannot be read (replacing dataset index {index} in epoch "
            f"{epoch}):{listing(f'{f}: {r}' for f, r in bad)}\nIs the image folder readable?"
        )


class _EpochBatchSampler:
    """Infinite iterable of this rank's per-iteration ``SampleKey`` lists from ``start_iter``."""

    def __init__(self, loader: "TrainLoader", start_iter: int):
        self.loader = loader
        self.start_iter = start_iter

    def __iter__(self) -> Iterator[List[SampleKey]]:
        it = self.start_iter
        while True:
            yield self.loader.batch_keys(it)
            it += 1


def _identity_collate(batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return batch


class _AugmentingCollate:
    """Runs ``batch_augment(samples, epoch)`` (in the worker) under the batch's seeds."""

    def __init__(self, batch_augment, seed: int, rank: int):
        self.batch_augment = batch_augment
        self.seed = seed
        self.rank = rank

    def __call__(self, batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        epoch, it = [s.pop(_ITER_KEY) for s in batch][0]
        bad = {i: s.pop(_BAD_KEY) for i, s in enumerate(batch) if _BAD_KEY in s}
        with _seeded_rngs(batch_seed(self.seed, it, self.rank)):
            batch = self.batch_augment(batch, epoch)
        for i, b in bad.items():
            batch[i][_BAD_KEY] = b
        return batch


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers are processes already; avoid oversubscribing the cores


class TrainLoader:
    """Infinite train loader for detectron2's trainer: yields this rank's ``list[dict]`` per iteration.

    Args:
        dataset: list of dataset dicts (``get_dataset_dicts``).
        mapper: ``RTDETRDatasetMapper(is_train=True)``-like callable
            ``mapper(dict, image_size=(h, w) | None, strong_augment=bool)``.
        total_batch_size: images per iteration over all ranks (divisible by the world size).
        num_workers: data-loading processes per rank (results do not depend on it).
        multiscale_sizes: square sizes drawn per iteration (``None``: mapper's ``image_size``).
        stop_aug_epoch: from this epoch on, strong augmentation and multi-scale stop (``None``: never).
        batch_augment: ``f(samples, epoch) -> samples`` applied to each rank's batch in the
            workers (DEIM: :class:`~mlla_rtdetr.data.batch_augment.DenseO2OBatchAugment`).
            A mapper with ``takes_epoch`` is called with ``epoch=``; one with ``bind_dataset`` is
            given the dataset (DEIM's Mosaic draws partner images from it).
        seed: the one seed of order, augmentation, sizes and replacements of unreadable images.
        start_iter: first iteration yielded (``set_start_iter`` changes it before iterating).
        shuffle: ``False`` visits the dataset in order every epoch.
        rank, world_size: default to ``detectron2.utils.comm``.
        max_bad_image_share: the trainer stops the run once more than this share of the
            dataset's images could not be read (they are skipped until then).
    """

    def __init__(
        self,
        dataset: Sequence[Dict[str, Any]],
        mapper,
        total_batch_size: int,
        num_workers: int = 0,
        multiscale_sizes: Optional[Sequence[int]] = None,
        stop_aug_epoch: Optional[int] = None,
        seed: Optional[int] = None,
        start_iter: int = 0,
        shuffle: bool = True,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        pin_memory: bool = False,
        max_bad_image_share: float = 0.01,
        batch_augment=None,
    ):
        self.world_size = comm.get_world_size() if world_size is None else int(world_size)
        self.rank = comm.get_rank() if rank is None else int(rank)
        total_batch_size = int(total_batch_size)
        if total_batch_size <= 0 or total_batch_size % self.world_size:
            raise ConfigError(
                f"dataloader.train.total_batch_size={total_batch_size} must be a positive multiple of the "
                f"number of processes ({self.world_size})."
            )
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} not in [0, {self.world_size})")
        if len(dataset) < total_batch_size:
            raise ConfigError(
                f"The dataset has {len(dataset)} images, fewer than dataloader.train.total_batch_size="
                f"{total_batch_size}: no full batch can be formed (the last partial batch of an epoch is "
                "dropped). Set dataloader.train.total_batch_size to at most the number of images."
            )
        self.total_batch_size = total_batch_size
        self.batch_size = total_batch_size // self.world_size
        self.num_samples = len(dataset)
        self.iters_per_epoch = self.num_samples // total_batch_size
        self.num_workers = int(num_workers)
        self.multiscale_sizes = None if multiscale_sizes is None else [int(s) for s in multiscale_sizes]
        if self.multiscale_sizes is not None and not self.multiscale_sizes:
            raise ConfigError("dataloader.train.multiscale_sizes is empty; set it to null to disable "
                              "multi-scale training.")
        self.stop_aug_epoch = None if stop_aug_epoch is None else int(stop_aug_epoch)
        self.seed = 0 if seed is None else int(seed)
        self.shuffle = bool(shuffle)
        self.pin_memory = pin_memory
        if not 0.0 <= float(max_bad_image_share) <= 1.0:
            raise ConfigError(f"dataloader.train.max_bad_image_share must be in [0, 1], got {max_bad_image_share}.")
        self.max_bad_image_share = float(max_bad_image_share)
        self._bad_images: List[Tuple[str, str]] = []
        self.start_iter = 0
        self.set_start_iter(start_iter)
        self.mapper = mapper
        self.batch_augment = batch_augment
        self._dataset = _MappedDataset(dataset, mapper, self.seed, tag_iteration=batch_augment is not None)
        if hasattr(mapper, "bind_dataset"):
            mapper.bind_dataset(self._dataset._dicts)
        self._order_cache: Dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ schedule
    def set_start_iter(self, start_iter: int) -> None:
        """Resume: the next ``iter(self)`` starts at iteration ``start_iter``."""
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.start_iter = int(start_iter)

    def epoch_of(self, it: int) -> int:
        return it // self.iters_per_epoch

    def strong_augment(self, epoch: int) -> bool:
        return self.stop_aug_epoch is None or epoch < self.stop_aug_epoch

    def order(self, epoch: int) -> np.ndarray:
        """Dataset indices in the visiting order of ``epoch``."""
        if epoch not in self._order_cache:
            if len(self._order_cache) > 2:
                self._order_cache.clear()
            if self.shuffle:
                rng = np.random.default_rng([self.seed, _TAG_ORDER, epoch])
                self._order_cache[epoch] = rng.permutation(self.num_samples)
            else:
                self._order_cache[epoch] = np.arange(self.num_samples)
        return self._order_cache[epoch]

    def image_size(self, it: int) -> Optional[Tuple[int, int]]:
        """Square size of iteration ``it``; ``None`` means the mapper's own ``image_size``."""
        if self.multiscale_sizes is None or not self.strong_augment(self.epoch_of(it)):
            return None
        rng = np.random.default_rng([self.seed, _TAG_SCALE, it])
        s = self.multiscale_sizes[int(rng.integers(len(self.multiscale_sizes)))]
        return (s, s)

    def batch_indices(self, it: int, rank: Optional[int] = None) -> List[int]:
        """Dataset indices of ``rank``'s (default: this rank's) share of iteration ``it``."""
        rank = self.rank if rank is None else rank
        epoch, b = divmod(it, self.iters_per_epoch)
        start = b * self.total_batch_size + rank * self.batch_size
        return [int(i) for i in self.order(epoch)[start : start + self.batch_size]]

    def batch_keys(self, it: int) -> List[SampleKey]:
        epoch = self.epoch_of(it)
        size, strong = self.image_size(it), self.strong_augment(epoch)
        return [(i, epoch, size, strong, it) for i in self.batch_indices(it)]

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[List[Dict[str, Any]]]:
        loader = torchdata.DataLoader(
            self._dataset,
            batch_sampler=_EpochBatchSampler(self, self.start_iter),
            num_workers=self.num_workers,
            collate_fn=_identity_collate if self.batch_augment is None
            else _AugmentingCollate(self.batch_augment, self.seed, self.rank),
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            pin_memory=self.pin_memory,
        )
        for batch in loader:
            for sample in batch:
                self._bad_images += sample.pop(_BAD_KEY, ())
            yield batch

    def take_bad_images(self) -> List[Tuple[str, str]]:
        """(file_name, reason) of the unreadable images met since the last call, in the order the
        batches were consumed (each was replaced in its batch)."""
        bad, self._bad_images = self._bad_images, []
        return bad

    def __repr__(self) -> str:
        return (
            f"TrainLoader(num_samples={self.num_samples}, total_batch_size={self.total_batch_size}, "
            f"batch_size={self.batch_size}, rank={self.rank}/{self.world_size}, iters_per_epoch="
            f"{self.iters_per_epoch}, multiscale_sizes={self.multiscale_sizes}, stop_aug_epoch="
            f"{self.stop_aug_epoch}, seed={self.seed}, start_iter={self.start_iter}, num_workers={self.num_workers}, "
            f"batch_augment={self.batch_augment!r})"
        )


def build_train_loader(
    dataset: Sequence[Dict[str, Any]],
    mapper,
    total_batch_size: int,
    num_workers: int = 0,
    multiscale_sizes: Optional[Sequence[int]] = None,
    stop_aug_epoch: Optional[int] = None,
    seed: Optional[int] = None,
    start_iter: int = 0,
    shuffle: bool = True,
    pin_memory: bool = False,
    max_bad_image_share: float = 0.01,
    batch_augment=None,
) -> TrainLoader:
    """LazyCall target of ``dataloader.train`` (see TrainLoader)."""
    loader = TrainLoader(
        dataset, mapper, total_batch_size, num_workers=num_workers, multiscale_sizes=multiscale_sizes,
        stop_aug_epoch=stop_aug_epoch, seed=seed, start_iter=start_iter, shuffle=shuffle, pin_memory=pin_memory,
        max_bad_image_share=max_bad_image_share, batch_augment=batch_augment,
    )
    logger.info("Built %r", loader)
    return loader


class _SkippingMapper:
    """Test mapper that turns an unreadable image into a marker record instead of an exception."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, record: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return self.mapper(record)
        except BAD_IMAGE_ERRORS as e:
            return {"file_name": record["file_name"], "image_id": record.get("image_id"),
                    _BAD_KEY: [(record["file_name"], str(e))]}


class TestLoader:
    """Sharded inference loader (detectron2 ``InferenceSampler``) yielding ``list[dict]`` batches
    without the images that cannot be read; ``bad_images`` maps the file names skipped by this
    process in the last pass to the reason (each is logged once per process)."""

    def __init__(self, dataset: Sequence[Dict[str, Any]], mapper, batch_size: int = 1, num_workers: int = 0):
        self.num_images = len(dataset)
        self._loader = build_detection_test_loader(
            dataset, mapper=_SkippingMapper(mapper), sampler=InferenceSampler(len(dataset)),
            batch_size=batch_size, num_workers=num_workers,
        )
        self.bad_images: Dict[str, str] = {}
        self._logged: set = set()

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[List[Dict[str, Any]]]:
        self.bad_images = {}
        for batch in self._loader:
            good = []
            for sample in batch:
                for file_name, reason in sample.get(_BAD_KEY, ()):
                    self.bad_images[file_name] = reason
                    if file_name not in self._logged:
                        self._logged.add(file_name)
                        logger.warning("Skipping an image that cannot be read (not evaluated): %s", reason)
                if _BAD_KEY not in sample:
                    good.append(sample)
            if good:
                yield good


def build_test_loader(
    dataset: Sequence[Dict[str, Any]], mapper, batch_size: int = 1, num_workers: int = 0
) -> TestLoader:
    """LazyCall target of ``dataloader.test`` (see TestLoader)."""
    return TestLoader(dataset, mapper, batch_size=batch_size, num_workers=num_workers)
