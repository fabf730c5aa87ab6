"""RT-DETRv2-R18 with attention-only MLLA layers after ResNet-vd stages res4 and res5: pre-norm,
CPE, gated linear attention with 2-D RoPE on the runtime grid and LePE, residual; no MLP. The rest
is ``rtdetrv2_r18vd_120e_coco.py`` (imported, not copied).

Init: ResNet-18-vd from ImageNet (as RT-DETR). The inserted layers start as the identity (their
residual branches, ``cpe1`` and ``out_proj``, are zero; the rest has MLLA's initialisation), so
training starts from the pretrained backbone's features unchanged::

    python tools/convert_rtdetr_checkpoint.py --kind resnet_vd --prefix backbone. \\
        --input ResNet18_vd_pretrained_from_paddle.pth --output weights/r18vd_in1k_backbone.pth
    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_attn_r18vd_120e_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/r18vd_in1k_backbone.pth
"""
from .models.mlla_placements import insert_mlla_attention
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

insert_mlla_attention(model, after=("res4", "res5"))
train.output_dir = "./output/mlla_attn_r18vd_120e_coco"
