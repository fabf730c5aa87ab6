"""Tiny RT-DETR on the embedded ``synthetic_shapes`` dataset, for tests and CPU runs.

Same architecture family as RT-DETR-R18 (ResNet-18-vd, AIFI + CCFF encoder, v2 decoder), scaled
down: backbone base width 16 (stage widths 16/32/64/128), hidden width 64, 2 decoder layers,
40 queries, 256 px input. About 0.6M parameters; a few hundred iterations train in about a
minute on 2 CPU cores::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py
"""
from mlla_rtdetr.config import get_config

from .models.rtdetr_r18vd import model

model.num_classes = 5  # synthetic_shapes has 5 classes
model.num_top_queries = 40
model.backbone.base_width = 16
model.encoder.hidden_dim = 64
model.encoder.nhead = 4
model.encoder.dim_feedforward = 128
model.encoder.eval_spatial_size = (256, 256)
model.decoder.hidden_dim = 64
model.decoder.feat_channels = [64, 64, 64]
model.decoder.nhead = 4
model.decoder.num_layers = 2
model.decoder.dim_feedforward = 128
model.decoder.num_queries = 40
model.decoder.num_denoising = 20
model.decoder.eval_spatial_size = (256, 256)

dataloader = get_config("common/data/synthetic_detection.py").dataloader
dataloader.train.total_batch_size = 8
dataloader.train.num_workers = 2
dataloader.train.stop_aug_epoch = None
dataloader.test.batch_size = 16

optimizer = get_config("common/optim.py").AdamW
optimizer.lr = 1e-3
optimizer.weight_decay = 1e-4
optimizer.params.backbone_lr_multiplier = 1.0  # trained from scratch

lr_multiplier = get_config("common/schedule.py").rtdetr
lr_multiplier.warmup = 50
lr_multiplier.warmup_unit = "iter"

train = get_config("common/train.py").train
train.output_dir = "./output/rtdetr_tiny_synthetic"
train.max_iter = 300
train.eval_period = 300
train.log_period = 20
train.checkpointer.period = 300
train.model_ema.warmups = 100
train.amp.enabled = False
train.device = "cpu"
