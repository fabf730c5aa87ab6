"""RT-DETRv2-R34 (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_r34vd_120e_coco.yml``) on COCO.

The RT-DETRv2-R50 recipe (``rtdetrv2_r50vd_6x_coco.py``: total batch 16, AdamW lr 1e-4 / wd 1e-4,
linear lr warm-up over 2000 iterations then constant, EMA 0.9999 with a 2000-iteration warm-up,
grad clip 0.1, AMP, multi-scale 480-800) with the R34 model, 120 epochs, augmentation and
multi-scale stopping at epoch 117, and the R34 YAML's parameter groups: backbone lr 5e-5 with no
decay on its norms, no decay on encoder/decoder norms and biases.
"""
from .models.rtdetr_r34vd import model  # noqa: F401
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

dataloader.train.stop_aug_epoch = 117
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr_mult=0.5),
    dict(pattern=r"^(?=.*backbone)(?=.*norm|bn).*$", lr_mult=0.5, weight_decay=0.0),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$", weight_decay=0.0),
]
train.epochs = 120
train.output_dir = "./output/rtdetrv2_r34vd_120e_coco"
