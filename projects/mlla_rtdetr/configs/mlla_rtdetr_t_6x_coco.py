"""MLLA-RT-DETR-T on COCO: MLLA-T backbone + standard hybrid encoder (AIFI on S5) + v2 decoder.

Training follows RT-DETRv2-R50 6x (``rtdetrv2_r50vd_6x_coco.py``: 72 epochs, batch 16, AdamW
lr 1e-4 / wd 1e-4, 2000-iter warm-up then constant, EMA 0.9999, grad clip 0.1, AMP, augmentation
and multi-scale stop at epoch 71) with RT-DETR's default parameter groups: backbone lr x0.1,
no weight decay on norms and biases. Backbone drop path as in the official MLLA detection configs.

Pretrained backbone: name the official ImageNet MLLA-T checkpoint, ``train.init_checkpoint=mlla_t_in1k``
(downloaded once into ``$MLLA_RTDETR_CACHE/checkpoints/MLLA_T.pth``, detected and converted: RoPE
tables and the classification head are ignored), pass the file, or convert it once::

    python tools/convert_mlla_checkpoint.py --input MLLA_T.pth --output weights/mlla_t_in1k_backbone.pth
    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_rtdetr_t_6x_coco.py \\
        train.init_checkpoint=weights/mlla_t_in1k_backbone.pth
"""
from mlla_rtdetr.config import get_config

from .models.mlla_rtdetr_t import model
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, train  # noqa: F401

optimizer = get_config("common/optim.py").AdamW
optimizer.lr = 1e-4
optimizer.weight_decay = 1e-4
optimizer.params.backbone_lr_multiplier = 0.1

train.output_dir = "./output/mlla_rtdetr_t_6x_coco"
