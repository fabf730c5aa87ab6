"""RT-DETRv2-L with HGNetv2-L (official ``rtdetrv2_pytorch/configs/rtdetrv2/rtdetrv2_hgnetv2_l_6x_coco.yml``) on COCO.

The RT-DETRv2-R50 recipe (``rtdetrv2_r50vd_6x_coco.py``: 72 epochs, total batch 16, AdamW lr 1e-4 /
wd 1e-4, 2000-iteration warm-up then constant, EMA 0.9999, grad clip 0.1, AMP, augmentation and
multi-scale stop at epoch 71) with the HGNetv2-L model and the YAML's parameter groups: backbone
non-norm parameters at lr 5e-6, no weight decay on encoder / decoder norms.

ImageNet backbone: the official YAML loads ``PPHGNetV2_L_ssld_pretrained_from_paddle.pth``; pass it
as ``train.init_checkpoint`` (detected and converted into the backbone)::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/rtdetrv2_hgnetv2_l_6x_coco.py \\
        --num-gpus 8 train.init_checkpoint=PPHGNetV2_L_ssld_pretrained_from_paddle.pth
"""
from .models.rtdetr_hgnetv2_l import model  # noqa: F401
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr_mult=0.05),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
train.output_dir = "./output/rtdetrv2_hgnetv2_l_6x_coco"
