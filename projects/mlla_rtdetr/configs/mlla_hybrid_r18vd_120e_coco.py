"""RT-DETRv2-R18 with a hybrid backbone: ResNet-18-vd whose stages res4 and res5 are MLLA stages
(ResNet-vd downsampling - 2x2 average pool + 1x1 conv + BN - then one MLLA block of 256 / 512
channels with 8 / 16 heads), res2 and res3 convolutional. Encoder, decoder and every training
setting are those of ``rtdetrv2_r18vd_120e_coco.py`` (imported, not copied).

Init: every part has an ImageNet source. Stem, res2, res3 and the MLLA stages' downsampling come
from ImageNet ResNet-18-vd (the downsampling is the projection shortcut of ResNet's first res4 /
res5 block), the MLLA blocks from the first block of MLLA-T's stages 3 and 4 (same widths and
heads); one command writes the file::

    python tools/convert_mlla_checkpoint.py --target hybrid --input MLLA_T.pth \\
        --resnet-vd ResNet18_vd_pretrained_from_paddle.pth \\
        --config projects/mlla_rtdetr/configs/mlla_hybrid_r18vd_120e_coco.py --output weights/hybrid_r18_in1k.pth
    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_hybrid_r18vd_120e_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/hybrid_r18_in1k.pth
"""
from .models.mlla_placements import use_mlla_stages
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

use_mlla_stages(model, stages=("res4", "res5"), depth=1)
train.output_dir = "./output/mlla_hybrid_r18vd_120e_coco"
