"""RT-DETRv2-R50 baseline with the MLLA hybrid encoder on S4 and S5: the ResNet-vd backbone, CCFF,
decoder and every training setting are those of ``rtdetrv2_r50vd_6x_coco.py`` (imported, not copied); only
the intra-scale interaction changes from AIFI (softmax attention on S5) to MLLA blocks."""
from .rtdetrv2_r50vd_6x_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .models.mlla_rtdetr_encoder import S4_S5, use_mlla_encoder

use_mlla_encoder(model, S4_S5)
train.output_dir = "./output/mlla_enc_r50vd_s4s5_6x_coco"
