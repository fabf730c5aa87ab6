"""MLLA-RT-DETR-S on COCO: the MLLA-T recipe (``mlla_rtdetr_t_6x_coco.py``: RT-DETRv2-R50 6x
training, backbone lr x0.1) with the MLLA-S model (``models/mlla_rtdetr_s.py``).

Pretrained backbone: name the official ImageNet MLLA-S checkpoint, ``train.init_checkpoint=mlla_s_in1k``
(downloaded once into ``$MLLA_RTDETR_CACHE/checkpoints/MLLA_S.pth``, detected and converted: RoPE
tables and the classification head are ignored), pass the file, or convert it once::

    python tools/convert_mlla_checkpoint.py --input MLLA_S.pth --output weights/mlla_s_in1k_backbone.pth
    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_rtdetr_s_6x_coco.py \\
        train.init_checkpoint=weights/mlla_s_in1k_backbone.pth
"""
from .mlla_rtdetr_t_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .models.mlla_rtdetr_s import model  # noqa: F401

train.output_dir = "./output/mlla_rtdetr_s_6x_coco"
