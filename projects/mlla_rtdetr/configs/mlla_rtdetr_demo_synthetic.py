"""The ``make demo`` recipe: a small MLLA-RT-DETR trained from scratch on CPU (about 3 minutes on an
idle 2-core CPU; 600 iterations at about 0.12 s each, plus 3 evaluations).

``mlla_rtdetr_tiny_synthetic.py`` (MLLA backbone C=16 with one block per stage, MLLA intra-scale
block on S5 instead of AIFI, hidden width 64, 2 decoder layers, 40 queries; imported, not copied)
with the changes that make a short CPU run converge on the embedded ``synthetic_shapes`` data:

* 128 px input (the shapes cover 15-45 % of the image side, so they stay 19-58 px): about 4x
  cheaper per iteration than 256 px;
* no strong augmentation and no multi-scale (``stop_aug_epoch=0``): only the horizontal flip;
* cosine lr decay to 5 % after a 50-iteration warm-up; EMA with a short horizon (decay 0.99)
  because the run is only a few hundred iterations long;
* evaluation at a few points (every 200 iterations) and at the end, on the 200 val images.

Run it through ``tools/run_demo.py`` (``make demo``), or directly::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_rtdetr_demo_synthetic.py
"""
from mlla_rtdetr.config import get_config

from .mlla_rtdetr_tiny_synthetic import dataloader, model, optimizer, train  # noqa: F401

IMAGE_SIZE = (128, 128)

model.encoder.eval_spatial_size = IMAGE_SIZE
model.decoder.eval_spatial_size = IMAGE_SIZE

dataloader.train.mapper.image_size = IMAGE_SIZE
dataloader.train.stop_aug_epoch = 0  # epoch 0 on: no photometric / zoom-out / IoU-crop, no multi-scale
dataloader.train.total_batch_size = 8
dataloader.train.seed = 0  # data order and augmentation; model init follows train.seed (42)
dataloader.test.mapper.image_size = IMAGE_SIZE

optimizer.lr = 1e-3

lr_multiplier = get_config("common/schedule.py").cosine
lr_multiplier.warmup = 50
lr_multiplier.warmup_unit = "iter"
lr_multiplier.min_factor = 0.05

train.output_dir = "./output/demo"
train.max_iter = 600
train.eval_period = 200
train.log_period = 10
train.checkpointer.period = 200
train.checkpointer.max_to_keep = 2
train.model_ema.decay = 0.99
train.model_ema.warmups = 50
train.model_ema.eval_raw = True
train.seed = 42
train.device = "cpu"
