"""RT-DETR-R34 (official v1, ``rtdetr_pytorch/configs/rtdetr/rtdetr_r34vd_6x_coco.yml``) on COCO.

72 epochs (6x), total batch 16, AdamW lr 1e-4 / wd 1e-4 with the official parameter groups
(backbone lr 1e-5 with no decay on its norms, no decay on encoder/decoder norms and biases), EMA
0.9999 (2000-iter warm-up), grad clip 0.1, constant lr with no warm-up (v1 has no lr warm-up
scheduler), multi-scale 480-800 and full augmentation for every epoch (v1 has no stop-augmentation
policy).
"""
from mlla_rtdetr.config import get_config

from .models.rtdetr_r34vd import model, rtdetr_v1

rtdetr_v1(model)

dataloader = get_config("common/data/coco_detection.py").dataloader
dataloader.train.total_batch_size = 16
dataloader.train.stop_aug_epoch = None  # augment and multi-scale until the end

optimizer = get_config("common/optim.py").AdamW_rtdetr_v1
optimizer.lr = 1e-4
optimizer.weight_decay = 1e-4
# Official v1 names the encoder input-projection BN and the decoder enc_output LayerNorm
# ``.1``, so its "norm" patterns miss them and they keep weight decay (first rule).
optimizer.params.rules = [
    dict(pattern=r"^(?:encoder\.input_proj\.\d+\.norm|decoder\.enc_output\.norm)\.weight$"),
    dict(pattern=r"^(?=.*backbone)(?=.*norm|bn).*$", lr_mult=0.1, weight_decay=0.0),
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr_mult=0.1),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$", weight_decay=0.0),
]

lr_multiplier = get_config("common/schedule.py").rtdetr
lr_multiplier.warmup = 0

train = get_config("common/train.py").train
train.output_dir = "./output/rtdetr_r34vd_6x_coco"
train.epochs = 72
train.clip_grad.max_norm = 0.1
train.model_ema.decay = 0.9999
train.model_ema.warmups = 2000
train.amp.enabled = False
