"""DEIM training recipe base (DEIM: DETR with Improved Matching, CVPR 2025; official
``deim_rtdetrv2/deim_r18vd_120e_coco.yml``): everything of a DEIM recipe except the model.

A DEIM-RT-DETRv2 / DEIM-D-FINE recipe takes the four sections and sets its model::

    from mlla_rtdetr.config import get_config
    deim = get_config("common/deim.py")
    dataloader, optimizer, lr_multiplier, train = deim.dataloader, deim.optimizer, deim.lr_multiplier, deim.train
    from .models.<your_model> import model

What it holds (official DEIM-R18 values):

* ``dataloader``: COCO with the Dense O2O pipeline (``common/data/coco_detection_dense_o2o.py``):
  ``policy_epochs=[4, 64, 117]`` (no augmentation / Mosaic 0.5 / RT-DETR augmentation / none),
  MixUp 0.5 in ``[4, policy_epochs[1])``, multi-scale until ``policy_epochs[2]``; total batch 16.
* ``optimizer``: AdamW lr 2e-4, wd 1e-4, no weight decay on norm layers (the R18 YAML's groups).
* ``lr_multiplier``: DEIM's flat-cosine: quadratic warm-up over 2000 iterations, flat until
  ``policy_epochs[1]`` (official ``flat_epoch``), cosine to ``lr_gamma`` 0.5 at
  ``policy_epochs[2]`` (= epochs - ``no_aug_epoch``), then 0.5.
* ``train``: 120 epochs, EMA 0.9999 / warm-up 2000, EMA restart from ``model_best.pth`` at
  ``policy_epochs[2]`` with decay 0.9999, grad clip 0.1, AMP (official ``use_amp: True``).

The stage epochs are written once, in ``dataloader.train.mapper.policy_epochs``; MixUp, the
schedule and the EMA restart follow it. Another length sets that and ``train.epochs``, e.g.
DEIM-D-FINE-S: ``train.epochs = 132``, ``policy_epochs = [4, 64, 120]`` (and its optimizer:
lr 4e-4, backbone 2e-4; EMA warm-up 1000). The criterion (MAL loss) belongs to the model.
"""
from mlla_rtdetr.config import get_config

dataloader = get_config("common/data/coco_detection_dense_o2o.py").dataloader
dataloader.train.total_batch_size = 16
dataloader.train.batch_augment.mixup_epochs = [4, "${...mapper.policy_epochs[1]}"]

optimizer = get_config("common/optim.py").AdamW_rtdetr_v2_r18
optimizer.lr = 2e-4
optimizer.weight_decay = 1e-4

lr_multiplier = get_config("common/schedule.py").deim_flat_cosine
lr_multiplier.flat = "${dataloader.train.mapper.policy_epochs[1]}"
lr_multiplier.decay_end = "${dataloader.train.mapper.policy_epochs[2]}"

train = get_config("common/train.py").train
train.epochs = 120
train.model_ema.decay = 0.9999
train.model_ema.warmups = 2000
train.model_ema.restart_epoch = "${dataloader.train.mapper.policy_epochs[2]}"
train.model_ema.restart_decay = 0.9999
train.clip_grad.max_norm = 0.1
train.amp.enabled = True
train.output_dir = "./output/deim"
