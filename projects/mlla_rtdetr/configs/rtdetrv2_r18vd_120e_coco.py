"""RT-DETRv2-R18 (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_r18vd_120e_coco.yml``) on COCO.

120 epochs, total batch 16, AdamW lr 1e-4 / wd 1e-4 with the official parameter groups (no decay on
any norm; the backbone trains at the base lr), linear lr warm-up over 2000 iterations then
constant, EMA 0.9999 (2000-iter warm-up), grad clip 0.1, AMP; photometric / zoom-out / IoU-crop
augmentation (no multi-scale) stop at epoch 117.
"""
from mlla_rtdetr.config import get_config

from .models.rtdetr_r18vd import model

dataloader = get_config("common/data/coco_detection.py").dataloader
dataloader.train.total_batch_size = 16
dataloader.train.stop_aug_epoch = 117
dataloader.train.multiscale_sizes = None  # the official YAML sets the collate scales to ~

optimizer = get_config("common/optim.py").AdamW_rtdetr_v2
optimizer.lr = 1e-4
optimizer.weight_decay = 1e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]

lr_multiplier = get_config("common/schedule.py").rtdetr
lr_multiplier.warmup = 2000
lr_multiplier.warmup_unit = "iter"

train = get_config("common/train.py").train
train.output_dir = "./output/rtdetrv2_r18vd_120e_coco"
train.epochs = 120
train.clip_grad.max_norm = 0.1
train.model_ema.decay = 0.9999
train.model_ema.warmups = 2000
train.amp.enabled = True
