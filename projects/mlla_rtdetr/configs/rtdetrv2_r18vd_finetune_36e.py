"""RT-DETRv2-R18 (RT-DETRv2-S) fine-tuned from the official COCO model on a small dataset of yours.

Start: ``train.init_checkpoint = "rtdetrv2_r18vd_120e_coco"``, the model-zoo row (48.1 AP),
downloaded once into ``$MLLA_RTDETR_CACHE/checkpoints`` and converted. Set ``model.num_classes``
and the dataset overrides (README, "Train on your data"): the class-dependent tensors (score
heads, denoising class embedding) start fresh for your classes, and the rows of your classes that
are COCO classes (by name, with synonyms such as "people" -> "person", or ``train.init_class_map``)
are carried over from the COCO model.

The COCO recipe (``rtdetrv2_r18vd_120e_coco.py``: total batch 16, AdamW wd 1e-4, no decay on
norms, grad clip 0.1, AMP, photometric / zoom-out / IoU-crop augmentation, no multi-scale) with
the settings of a fine-tune, as the official code's ``-t`` tuning runs and the D-FINE / DEIM
custom-data recipes do it, scaled to a short schedule:

* 36 epochs instead of 120; augmentation stops 3 epochs before the end (epoch 33, as 117 of 120);
* lr 5e-5 (half of COCO's 1e-4) and the backbone at 0.1x: the features are already trained;
* warm-up of 1 epoch instead of 2000 iterations (a few hundred images make an epoch of a few
  dozen iterations; 2000 iterations would be the whole run);
* EMA decay 0.999 with a 100-iteration warm-up instead of 0.9999 / 2000: an EMA over ~10k
  iterations would still be mostly the COCO weights at the end of a run this short.
"""
from .models.rtdetr_r18vd import model  # noqa: F401
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

train.init_checkpoint = "rtdetrv2_r18vd_120e_coco"
train.epochs = 36
dataloader.train.stop_aug_epoch = 33
optimizer.lr = 5e-5
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*(?:norm|bn)).*$", lr_mult=0.1),
    dict(pattern=r"^(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
lr_multiplier.warmup = 1
lr_multiplier.warmup_unit = "epoch"
train.model_ema.decay = 0.999
train.model_ema.warmups = 100
train.output_dir = "./output/rtdetrv2_r18vd_finetune_36e"
