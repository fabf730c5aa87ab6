"""RT-DETR-R34 (official v1, ``rtdetr_pytorch/configs/rtdetr/rtdetr_r34vd_6x_coco.yml``) on COCO.

The v1 R18 recipe (``rtdetr_r18vd_6x_coco.py``) with the R34 model. The R34 YAML spells its group
patterns ``(?=.*norm|bn)`` / ``(?:norm|bn|bias)``: on this model they select the same parameters as
the R18 ones (the ``bn`` alternative matches no parameter name), so the R18 groups are used.
"""
from .models.rtdetr_r34vd import model, rtdetr_v1
from .rtdetr_r18vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

rtdetr_v1(model)

train.output_dir = "./output/rtdetr_r34vd_6x_coco"
