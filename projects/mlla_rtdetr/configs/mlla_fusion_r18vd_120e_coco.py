"""RT-DETRv2-R18 with MLLA fusion blocks: every CCFF block (2 FPN + 2 PAN) is a CSP layer of one
MLLA block (CPE, gated linear attention with 2-D RoPE and LePE, MLP; hidden width 128, 4 heads)
instead of three RepVGG blocks. Backbone, intra-scale AIFI, decoder and every training setting are
those of ``rtdetrv2_r18vd_120e_coco.py`` (imported, not copied).

Init: ResNet-18-vd from ImageNet (as RT-DETR); the fusion blocks, like RT-DETR's CCFF, train from
scratch (MLLA's initialisation: truncated-normal(0.02) linear layers, zero biases)::

    python tools/convert_rtdetr_checkpoint.py --kind resnet_vd --prefix backbone. \\
        --input ResNet18_vd_pretrained_from_paddle.pth --output weights/r18vd_in1k_backbone.pth
    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_fusion_r18vd_120e_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/r18vd_in1k_backbone.pth
"""
from .models.mlla_placements import use_mlla_fusion
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

use_mlla_fusion(model, num_layers=1)
train.output_dir = "./output/mlla_fusion_r18vd_120e_coco"
