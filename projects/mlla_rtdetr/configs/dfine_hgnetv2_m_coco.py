"""D-FINE-M (official ``deim_dfine/dfine_hgnetv2_m_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad) on COCO.

The D-FINE-L recipe (``dfine_hgnetv2_l_coco.py``: total batch 32, RT-DETR augmentation and
multi-scale, quadratic warm-up over 500 iterations then constant, EMA 0.9999 / 1000-iteration
warm-up restarted with decay 0.9999 at the stop epoch, grad clip 0.1, AMP) with what the M YAML
changes: the M model (``models/dfine_hgnetv2_m.py``, HGNetv2-B2, trainable BatchNorm), 132
epochs with augmentation and multi-scale until 120, 640 six times in the multi-scale list, AdamW
lr 2e-4 / wd 1e-4 with the backbone at 2e-5 (its ``norm`` parameters, if any, without weight
decay) and no weight decay on encoder / decoder ``norm`` / ``bn`` / ``bias`` parameters. Nothing
differs from the official YAML. ImageNet start: ``PPHGNetV2_B2_stage1.pth``.
"""
from .dfine_hgnetv2_l_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.dfine_hgnetv2_m import model  # noqa: F401

dataloader.train.stop_aug_epoch = 120
dataloader.train.multiscale_sizes.base_repeat = 6
optimizer.lr = 2e-4
optimizer.weight_decay = 1e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr=2e-5),
    dict(pattern=r"^(?=.*backbone)(?=.*norm|bn).*$", lr=2e-5, weight_decay=0.0),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$", weight_decay=0.0),
]
train.epochs = 132
train.output_dir = "./output/dfine_hgnetv2_m_coco"
