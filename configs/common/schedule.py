"""Common lr multipliers: warm-up then constant / multi-step / cosine / flat-cosine (also DEIM's).

Each entry is a LazyCall of :func:`mlla_rtdetr.engine.schedule.lr_schedule`; the engine fills
``max_iter`` and ``iters_per_epoch`` (from the train loader), so milestones can be in epochs::

    lr_multiplier = get_config("common/schedule.py").multistep
    lr_multiplier.milestones = [40]          # epochs (lr_multiplier.unit = "epoch")
    lr_multiplier.warmup = 2000              # iterations (lr_multiplier.warmup_unit = "iter")

or written directly: ``L(lr_schedule)(name="cosine", warmup=1, warmup_unit="epoch")``.
Milestones at or past the end of training never fire, which is how RT-DETR's official
``MultiStepLR(milestones=[1000])`` keeps the lr constant after warm-up (``rtdetr`` below).
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.engine.schedule import lr_schedule

# RT-DETR v1/v2 official: LinearWarmup 2000 iterations, then constant (milestone never reached).
rtdetr = L(lr_schedule)(
    name="constant", unit="epoch", warmup=2000, warmup_unit="iter", warmup_method="linear",
    max_iter=None, iters_per_epoch=None,
)
# Step decay by gamma at each milestone (epochs).
multistep = L(lr_schedule)(
    name="multistep", milestones=[], gamma=0.1, unit="epoch",
    warmup=2000, warmup_unit="iter", warmup_method="linear",
    max_iter=None, iters_per_epoch=None,
)
# Cosine from 1 to min_factor over the whole run after warm-up.
cosine = L(lr_schedule)(
    name="cosine", unit="epoch", min_factor=0.01,
    warmup=2000, warmup_unit="iter", warmup_method="linear",
    max_iter=None, iters_per_epoch=None,
)
# Flat (factor 1) for `flat` epochs, then cosine to min_factor at `decay_end` (default: the end).
flat_cosine = L(lr_schedule)(
    name="flat_cosine", unit="epoch", flat=0, decay_end=None, min_factor=0.05,
    warmup=2000, warmup_unit="iter", warmup_method="linear",
    max_iter=None, iters_per_epoch=None,
)
# DEIM's FlatCosineLRScheduler (deim_r18vd_120e_coco: warmup_iter 2000, flat_epoch 64,
# no_aug_epoch 3, lr_gamma 0.5, 120 epochs): quadratic warm-up (i / 2000) ** 2, factor 1 until
# epoch 64, cosine to lr_gamma at the start of the no-aug tail (epoch 120 - 3 = 117), then lr_gamma.
# A recipe of another length sets flat and decay_end (= epochs - no_aug_epoch).
deim_flat_cosine = L(lr_schedule)(
    name="flat_cosine", unit="epoch", flat=64, decay_end=117, min_factor=0.5,
    warmup=2000, warmup_unit="iter", warmup_method="quadratic",
    max_iter=None, iters_per_epoch=None,
)
