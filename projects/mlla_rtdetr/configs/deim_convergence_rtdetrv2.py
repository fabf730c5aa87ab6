"""The RT-DETRv2 arm of the DEIM convergence study (``configs/sweeps/deim_convergence.txt``): the tiny
RT-DETR (``rtdetr_tiny_synthetic.py``) with the RT-DETRv2 recipe (RT-DETR augmentations, constant lr
after a linear warm-up, VFL), at the study's scale: 96 px, 800 iterations of 8 images, the EMA
weights evaluated every 200 iterations.

The other arm, ``deim_convergence_deim.py``, is the same model with DEIM's recipe at the same scale.
Shared by both (``study_scale``): input size, length, evaluation points, batch, lr, EMA (decay 0.99 - the
recipes' 0.9999 would freeze the EMA weights a few hundred iterations into so short a run), data
in the main process (1 thread per run). Commands and numbers: model zoo README, "Does DEIM converge
faster?"
"""
from mlla_rtdetr.data import multiscale_sizes

from .rtdetr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

IMAGE_SIZE, MAX_ITER, EVAL_PERIOD, EMA_DECAY = 96, 800, 200, 0.99


def study_scale(dataloader, model, train):
    """What both arms share: input size, length, evaluation points, data in the main process, EMA."""
    size = (IMAGE_SIZE, IMAGE_SIZE)
    dataloader.train.mapper.image_size = size
    dataloader.train.num_workers = 0
    dataloader.test.mapper.image_size = size
    model.encoder.eval_spatial_size = size
    model.decoder.eval_spatial_size = size
    train.max_iter = MAX_ITER
    train.eval_period = EVAL_PERIOD
    train.checkpointer.period = EVAL_PERIOD
    train.model_ema.decay = EMA_DECAY
    train.model_ema.eval_raw = False


study_scale(dataloader, model, train)
dataloader.train.multiscale_sizes = multiscale_sizes(base=96, min_size=64, max_size=128, step=32, base_repeat=3)
train.output_dir = "./output/deim_convergence_rtdetrv2"
