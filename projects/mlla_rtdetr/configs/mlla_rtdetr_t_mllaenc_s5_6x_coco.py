"""MLLA-RT-DETR-T with the MLLA hybrid encoder on S5: MLLA-T backbone, and the intra-scale
interaction on the stride-32 map is an MLLA block (linear attention + RoPE + LePE) instead of AIFI.
Training as ``mlla_rtdetr_t_6x_coco.py``."""
from .mlla_rtdetr_t_6x_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .models.mlla_rtdetr_encoder import S5, use_mlla_encoder

use_mlla_encoder(model, S5)
train.output_dir = "./output/mlla_rtdetr_t_mllaenc_s5_6x_coco"
