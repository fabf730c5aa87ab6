"""RT-DETRv2-R50 (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_r50vd_6x_coco.yml``) on COCO.

72 epochs, total batch 16, AdamW lr 1e-4 / wd 1e-4 with the official parameter groups (backbone
non-norm lr 1e-5, no decay on encoder/decoder norms), linear lr warm-up over 2000 iterations then
constant, EMA 0.9999 (2000-iter warm-up), grad clip 0.1, AMP; photometric / zoom-out / IoU-crop
augmentation and multi-scale 480-800 stop at epoch 71.
"""
from mlla_rtdetr.config import get_config

from .models.rtdetr_r50vd import model

dataloader = get_config("common/data/coco_detection.py").dataloader
dataloader.train.total_batch_size = 16
dataloader.train.stop_aug_epoch = 71

optimizer = get_config("common/optim.py").AdamW_rtdetr_v2
optimizer.lr = 1e-4
optimizer.weight_decay = 1e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm).*$", lr_mult=0.1),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]

lr_multiplier = get_config("common/schedule.py").rtdetr
lr_multiplier.warmup = 2000
lr_multiplier.warmup_unit = "iter"

train = get_config("common/train.py").train
train.output_dir = "./output/rtdetrv2_r50vd_6x_coco"
train.epochs = 72
train.clip_grad.max_norm = 0.1
train.model_ema.decay = 0.9999
train.model_ema.warmups = 2000
train.amp.enabled = True
