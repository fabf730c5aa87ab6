"""RT-DETRv2-H with HGNetv2-H (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_hgnetv2_h_6x_coco.yml``) on COCO.

The RT-DETRv2-L (HGNetv2) recipe with the H model (encoder width 512, FFN 2048, two AIFI layers);
backbone non-norm parameters at lr 5e-6 as for L. ImageNet backbone:
``PPHGNetV2_H_ssld_pretrained_from_paddle.pth`` as ``train.init_checkpoint``.
"""
from .models.rtdetr_hgnetv2_h import model  # noqa: F401
from .rtdetrv2_hgnetv2_l_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

train.output_dir = "./output/rtdetrv2_hgnetv2_h_6x_coco"
