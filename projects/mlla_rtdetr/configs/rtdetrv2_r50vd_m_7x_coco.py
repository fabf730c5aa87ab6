"""RT-DETRv2-R50-m (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_r50vd_m_7x_coco.yml``) on COCO.

The RT-DETRv2-R50 recipe (``rtdetrv2_r50vd_6x_coco.py``: optimizer groups, warm-up, EMA, clip,
AMP, data) with the R50-m model, trained 84 epochs with augmentation and multi-scale stopping at
epoch 81.
"""
from .models.rtdetr_r50vd_m import model  # noqa: F401
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

dataloader.train.stop_aug_epoch = 81
train.epochs = 84
train.output_dir = "./output/rtdetrv2_r50vd_m_7x_coco"
