"""RT-DETRv2-X with HGNetv2-X (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_hgnetv2_x_6x_coco.yml``) on COCO.

The RT-DETRv2-L (HGNetv2) recipe with the X model (encoder width 384, FFN 2048) and backbone
non-norm parameters at lr 1e-6. ImageNet backbone: ``PPHGNetV2_X_ssld_pretrained_from_paddle.pth``
as ``train.init_checkpoint``.
"""
from .models.rtdetr_hgnetv2_x import model  # noqa: F401
from .rtdetrv2_hgnetv2_l_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

optimizer.params.rules[0].lr_mult = 0.01
train.output_dir = "./output/rtdetrv2_hgnetv2_x_6x_coco"
