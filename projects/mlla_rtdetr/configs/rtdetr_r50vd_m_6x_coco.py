"""RT-DETR-R50-m (official v1, ``rtdetr_pytorch/configs/rtdetr/rtdetr_r50vd_m_6x_coco.yml``) on COCO.

The R50 recipe (``rtdetr_r50vd_6x_coco.py``: same schedule, optimizer groups, EMA, clip and data)
with the R50-m model (see ``models/rtdetr_r50vd_m.py``).
"""
from .models.rtdetr_r50vd_m import model, rtdetr_v1
from .rtdetr_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

rtdetr_v1(model)

train.output_dir = "./output/rtdetr_r50vd_m_6x_coco"
