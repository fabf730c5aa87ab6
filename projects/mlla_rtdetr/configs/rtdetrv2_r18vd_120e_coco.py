"""RT-DETRv2-R18 (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_r18vd_120e_coco.yml``) on COCO.

The RT-DETRv2-R50 recipe (``rtdetrv2_r50vd_6x_coco.py``: total batch 16, AdamW lr 1e-4 / wd 1e-4,
linear lr warm-up over 2000 iterations then constant, EMA 0.9999 with a 2000-iteration warm-up,
grad clip 0.1, AMP) with the R18 model, 120 epochs, photometric / zoom-out / IoU-crop augmentation
stopping at epoch 117 and no multi-scale, and the R18 YAML's parameter groups: no decay on any norm,
the backbone at the base lr.
"""
from .models.rtdetr_r18vd import model  # noqa: F401
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

dataloader.train.stop_aug_epoch = 117
dataloader.train.multiscale_sizes = None  # the official YAML sets the collate scales to ~
optimizer.params.rules = [
    dict(pattern=r"^(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
train.epochs = 120
train.output_dir = "./output/rtdetrv2_r18vd_120e_coco"
