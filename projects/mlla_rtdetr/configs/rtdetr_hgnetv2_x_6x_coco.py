"""RT-DETR-X (the RT-DETR paper's HGNetv2-X model, official v1 decoder) on COCO.

The v1 RT-DETR-L recipe (``rtdetr_hgnetv2_l_6x_coco.py``) with the X model (encoder width 384, FFN
2048) and the Paddle YAML's backbone learning rate for X (``lr_mult_list`` 0.01: 1e-6). Official
PyTorch weights: ``rtdetrv2_hgnetv2_x_6x_coco_from_paddle.pth``.
"""
from .models.rtdetr_hgnetv2_x import model, rtdetr_v1
from .rtdetr_hgnetv2_l_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

rtdetr_v1(model)
optimizer.params.rules[1].lr_mult = 0.01
train.output_dir = "./output/rtdetr_hgnetv2_x_6x_coco"
