"""The DEIM arm of the DEIM convergence study (``configs/sweeps/deim_convergence.txt``): the tiny
RT-DETR with DEIM's recipe and model-side changes (``deim_rtdetr_tiny_synthetic.py``: Dense O2O,
flat-cosine, EMA restart, MAL, SiLU decoder, ``as_reg`` query positions, DEIM denoising boxes) at the
scale of the RT-DETRv2 arm (``deim_convergence_rtdetrv2.py``: 96 px, 800 iterations of 8 images,
EMA evaluated every 200).

DEIM's four stages scaled to the run: with the study's 1600 training images an epoch is 200
iterations, so ``policy_epochs=[1, 2, 3]`` over 4 epochs gives no augmentation for iterations
0-199, Mosaic + MixUp for 200-399 (the lr flat until 400), the RT-DETR augmentations for 400-599
(cosine decay to 0.5x), none for 600-799, with the EMA restarted from the best checkpoint at 600.
"""
from mlla_rtdetr.data import multiscale_sizes

from .deim_convergence_rtdetrv2 import EMA_DECAY, study_scale
from .deim_rtdetr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

study_scale(dataloader, model, train)
train.epochs = None
train.eval_epochs = None
train.checkpointer.period_epochs = None
dataloader.train.mapper.mosaic_output_size = 48
dataloader.train.mapper.policy_epochs = [1, 2, 3]
dataloader.train.batch_augment.multiscale_sizes = multiscale_sizes(
    base=96, min_size=64, max_size=128, step=32, base_repeat=3, upper_descending=True
)
train.model_ema.restart_decay = EMA_DECAY
train.output_dir = "./output/deim_convergence_deim"
