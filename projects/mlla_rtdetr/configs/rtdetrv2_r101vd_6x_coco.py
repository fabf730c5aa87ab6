"""RT-DETRv2-R101 (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_r101vd_6x_coco.yml``) on COCO.

The RT-DETRv2-R50 recipe (``rtdetrv2_r50vd_6x_coco.py``: 72 epochs, warm-up, EMA, clip, AMP, data,
stop-aug epoch 71) with the R101 model and the R101 YAML's backbone group: non-norm backbone
parameters at lr 1e-6 (its pattern also leaves ``bn`` parameters out).
"""
from .models.rtdetr_r101vd import model  # noqa: F401
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr_mult=0.01),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
train.output_dir = "./output/rtdetrv2_r101vd_6x_coco"
