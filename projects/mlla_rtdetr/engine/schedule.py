"""Learning-rate multiplier schedules expressed in epochs or iterations.

A schedule is a fvcore :class:`ParamScheduler` (what detectron2's ``LRMultiplier`` consumes):
it maps the training progress ``where = iter / max_iter`` in [0, 1) to a factor on every
param group's initial lr. :func:`lr_schedule` builds one from human units::

    L(lr_schedule)(name="multistep", milestones=[40], unit="epoch", gamma=0.1,
                   warmup=2000, warmup_unit="iter")

``max_iter`` and ``iters_per_epoch`` are left ``None`` in configs; the engine fills them in
(see :func:`mlla_rtdetr.engine.builders.build_lr_multiplier`) once the train loader is known, so
milestones in epochs follow the dataset size and total batch size.

Warm-up follows RT-DETR's ``LinearWarmup``: iteration ``i`` (0-based) uses
``min(1, (i + 1) / warmup_iters)`` times the main schedule. DEIM's ``FlatCosineLRScheduler`` is
``flat_cosine`` with ``warmup_method="quadratic"``: ``(i / warmup_iters) ** 2`` during the warm-up
(replacing the main schedule, as official), then 1 until ``flat``, a cosine to ``min_factor``
(DEIM's ``lr_gamma``) at ``decay_end`` = the end minus DEIM's ``no_aug_epoch``, and ``min_factor``
for the rest. (The official solver sets the lr after each step, so its iteration ``i`` runs with
the value of ``i - 1``; here iteration ``i`` runs with the value of ``i``.)
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["IterationSchedule", "lr_schedule", "to_iterations", "SCHEDULE_NAMES"]

SCHEDULE_NAMES = ("constant", "multistep", "cosine", "flat_cosine")
UNITS = ("epoch", "iter")
WARMUP_METHODS = ("linear", "constant", "quadratic")


def to_iterations(value: float, unit: str, iters_per_epoch: Optional[int]) -> int:
    """Convert ``value`` given in ``unit`` ("epoch" or "iter") to a whole number of iterations."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if unit == "iter":
        if float(value) != int(value):
            raise ValueError(f"An iteration count must be a whole number, got {value}")
        return int(value)
    if not iters_per_epoch or iters_per_epoch <= 0:
        raise ValueError(
            f"Cannot convert {value} epochs to iterations: iters_per_epoch={iters_per_epoch}. "
            "The engine sets it from the train loader; set it explicitly when building a "
            "schedule by hand."
        )
    return int(round(float(value) * iters_per_epoch))


class IterationSchedule(ParamScheduler):
    """Warm-up followed by a constant / multi-step / cosine / flat-cosine decay, in iterations.

    Args:
        name: one of :data:`SCHEDULE_NAMES`.
        max_iter: total number of training iterations (used to turn ``where`` into an iteration).
        milestones: iterations at which "multistep" multiplies the factor by ``gamma``.
        gamma: multistep decay factor.
        warmup_iters: linear warm-up length in iterations (0 disables it).
        warmup_method: "linear" (RT-DETR: ``(i + 1) / warmup_iters``), "constant"
            (``warmup_factor`` during warm-up) or "quadratic" (DEIM: ``(i / warmup_iters) ** 2``,
            in place of the main schedule).
        warmup_factor: start factor of "linear" warm-up (0 reproduces RT-DETR exactly; the factor
            ramps from ``warmup_factor + (1 - warmup_factor) / warmup_iters`` to 1).
        flat_iters: "flat_cosine" keeps the factor at 1 for this many iterations, then decays.
        decay_end_iter: iteration at which cosine decay reaches ``min_factor`` (default: max_iter).
        min_factor: final factor of "cosine" / "flat_cosine".
    """

    WHERE_EPSILON = 1e-6

    def __init__(
        self,
        name: str,
        max_iter: int,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_method: str = "linear",
        warmup_factor: float = 0.0,
        flat_iters: int = 0,
        decay_end_iter: Optional[int] = None,
        min_factor: float = 0.0,
    ):
        if name not in SCHEDULE_NAMES:
            raise ValueError(f"Unknown lr schedule {name!r}; choose one of {SCHEDULE_NAMES}")
        if max_iter <= 0:
            raise ValueError(f"max_iter must be positive, got {max_iter}")
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"warmup_method must be one of {WARMUP_METHODS}, got {warmup_method!r}")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        self.name = name
        self.max_iter = int(max_iter)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_method = warmup_method
        self.warmup_factor = float(warmup_factor)
        self.flat_iters = int(flat_iters)
        self.decay_end_iter = int(decay_end_iter) if decay_end_iter is not None else self.max_iter
        self.min_factor = float(min_factor)

    def value_at_iter(self, it: int) -> float:
        """The lr factor used by iteration ``it`` (0-based)."""
        if self.warmup_method == "quadratic" and it < self.warmup_iters:
            return (it / self.warmup_iters) ** 2
        return self._warmup(it) * self._main(it)

    def __call__(self, where: float) -> float:
        # LRMultiplier queries where = it / max_iter; round back to the integer iteration.
        return self.value_at_iter(int(math.floor(where * self.max_iter + self.WHERE_EPSILON)))

    def _warmup(self, it: int) -> float:
        if it >= self.warmup_iters:
            return 1.0
        if self.warmup_method == "constant":
            return self.warmup_factor
        alpha = min(1.0, (it + 1) / self.warmup_iters)
        return self.warmup_factor + (1.0 - self.warmup_factor) * alpha

    def _main(self, it: int) -> float:
        if self.name == "constant":
            return 1.0
        if self.name == "multistep":
            return self.gamma ** sum(1 for m in self.milestones if it >= m)
        start = self.flat_iters if self.name == "flat_cosine" else 0
        if it < start:
            return 1.0
        span = max(1, self.decay_end_iter - start)
        progress = min(1.0, (it - start) / span)
        return self.min_factor + 0.5 * (1.0 - self.min_factor) * (1.0 + math.cos(math.pi * progress))

    def describe(self) -> str:
        parts = [f"{self.name} over {self.max_iter} iters"]
        if self.warmup_iters:
            parts.append(f"{self.warmup_method} warm-up {self.warmup_iters} iters")
        if self.name == "multistep":
            parts.append(f"milestones={self.milestones} gamma={self.gamma}")
        if self.name in ("cosine", "flat_cosine"):
            parts.append(
                f"flat={self.flat_iters} decay_end={self.decay_end_iter} min_factor={self.min_factor}"
            )
        return ", ".join(parts)


def lr_schedule(
    name: str = "multistep",
    *,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    unit: str = "epoch",
    warmup: float = 0,
    warmup_unit: str = "iter",
    warmup_method: str = "linear",
    warmup_factor: float = 0.0,
    flat: float = 0,
    decay_end: Optional[float] = None,
    min_factor: float = 0.0,
    max_iter: Optional[int] = None,
    iters_per_epoch: Optional[int] = None,
) -> IterationSchedule:
    """Build an :class:`IterationSchedule` from values in epochs or iterations.

    Args:
        name: "constant", "multistep", "cosine" or "flat_cosine".
        milestones: multistep decay points, in ``unit``. Milestones at or beyond the end of
            training never fire (RT-DETR's ``milestones: [1000]`` = constant lr after warm-up).
        unit: unit of ``milestones``, ``flat`` and ``decay_end``: "epoch" or "iter".
        warmup, warmup_unit: warm-up length and its unit.
        flat: "flat_cosine" only: how long the factor stays at 1 before the cosine decay.
        decay_end: where the cosine reaches ``min_factor`` (default: end of training).
        max_iter, iters_per_epoch: filled in by the engine; set them yourself only when building
            a schedule outside of ``tools/train_net.py``.
    """
    if max_iter is None:
        raise ValueError(
            "lr_schedule needs max_iter; the engine fills lr_multiplier.max_iter from train.max_iter"
            " / train.epochs. Set it explicitly when building a schedule by hand."
        )
    conv = lambda v, u: to_iterations(v, u, iters_per_epoch)  # noqa: E731
    return IterationSchedule(
        name=name,
        max_iter=int(max_iter),
        milestones=[conv(m, unit) for m in milestones],
        gamma=gamma,
        warmup_iters=conv(warmup, warmup_unit) if warmup else 0,
        warmup_method=warmup_method,
        warmup_factor=warmup_factor,
        flat_iters=conv(flat, unit) if flat else 0,
        decay_end_iter=conv(decay_end, unit) if decay_end is not None else None,
        min_factor=min_factor,
    )
