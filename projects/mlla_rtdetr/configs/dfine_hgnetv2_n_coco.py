"""D-FINE-N (official ``deim_dfine/dfine_hgnetv2_n_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The D-FINE-S recipe (``dfine_hgnetv2_s_coco.py``: RT-DETR augmentation, AdamW wd 1e-4 with the
backbone at half the base lr and the S YAML's three groups, quadratic warm-up over 500 iterations
then constant, EMA 0.9999 / 1000-iteration warm-up restarted with decay 0.9999 at the stop epoch,
grad clip 0.1, AMP) with what the N YAML changes: the N model (``models/dfine_hgnetv2_n.py``,
HGNetv2-B0 on strides 16 / 32), 160 epochs with augmentation until 148, total batch 128, lr 8e-4
(backbone 4e-4) and no multi-scale (official ``base_size_repeat: ~``). Nothing differs from the
official YAML. ImageNet start: ``PPHGNetV2_B0_stage1.pth``.
"""
from .dfine_hgnetv2_s_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.dfine_hgnetv2_n import model  # noqa: F401

dataloader.train.total_batch_size = 128
dataloader.train.stop_aug_epoch = 148
dataloader.train.multiscale_sizes = None
optimizer.lr = 8e-4
optimizer.params.rules[0]["lr"] = 4e-4
optimizer.params.rules[1]["lr"] = 4e-4
train.epochs = 160
train.output_dir = "./output/dfine_hgnetv2_n_coco"
