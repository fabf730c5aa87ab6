"""Tiny DEIM-RT-DETR on the embedded ``synthetic_shapes`` dataset, for tests and CPU runs.

The tiny RT-DETR (``rtdetr_tiny_synthetic.py``: R18-vd-like backbone of width 16, hidden width
64, 2 decoder layers, 40 queries, 256 px) trained with DEIM's recipe (``configs/common/deim.py``):
the Dense O2O pipeline scaled to 256 px (Mosaic quadrants of short side 128, multi-scale 192..320
in the official order), its 4-stage policy over 8 epochs of 200 iterations
(``policy_epochs=[1, 4, 7]``: no augmentation in epoch 0, Mosaic and MixUp in 1-3, the RT-DETR
augmentations in 4-6, none in 7), the flat-cosine schedule (50-iteration quadratic warm-up) and the
EMA restart from ``model_best.pth`` at epoch 7. The model side is DEIM's too (``models/deim.py``
``deim_rtdetrv2``): the MAL loss (gamma 1.5) instead of VFL, SiLU in the decoder and its heads, the
``as_reg`` query position head, DEIM's denoising boxes and a fully trainable backbone. The same
tiny model with the RT-DETRv2 recipe is ``rtdetr_tiny_synthetic.py``::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/deim_rtdetr_tiny_synthetic.py
"""
from mlla_rtdetr.config import get_config
from mlla_rtdetr.data import multiscale_sizes

from .models.deim import deim_rtdetrv2
from .rtdetr_tiny_synthetic import dataloader as synthetic
from .rtdetr_tiny_synthetic import model

deim_rtdetrv2(model)

deim = get_config("common/deim.py")

dataloader = deim.dataloader
dataloader.train.dataset = synthetic.train.dataset
dataloader.test = synthetic.test
dataloader.evaluator = synthetic.evaluator
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 2
dataloader.train.mapper.image_size = (256, 256)
dataloader.train.mapper.zoom_out_side_range = (1.0, 2.0)  # as the synthetic RT-DETR recipes
dataloader.train.mapper.mosaic_output_size = 128
dataloader.train.mapper.policy_epochs = [1, 4, 7]
dataloader.train.batch_augment.mixup_epochs = [1, "${...mapper.policy_epochs[1]}"]
dataloader.train.batch_augment.multiscale_sizes = multiscale_sizes(
    base=256, min_size=192, max_size=320, step=32, base_repeat=3, upper_descending=True
)

optimizer = deim.optimizer
optimizer.lr = 1e-3

lr_multiplier = deim.lr_multiplier
lr_multiplier.warmup = 50

train = deim.train
train.output_dir = "./output/deim_rtdetr_tiny_synthetic"
train.epochs = 8
train.eval_epochs = 1
train.log_period = 20
train.checkpointer.period_epochs = 1
train.model_ema.warmups = 100
train.amp.enabled = False
train.device = "cpu"
