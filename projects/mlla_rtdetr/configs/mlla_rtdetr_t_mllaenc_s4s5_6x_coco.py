"""MLLA-RT-DETR-T with MLLA intra-scale blocks on S4 and S5 (stride 16 and 32; linear cost makes
the 1600-token S4 map affordable at 640). Training as ``mlla_rtdetr_t_6x_coco.py``."""
from .mlla_rtdetr_t_6x_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .models.mlla_rtdetr_encoder import S4_S5, use_mlla_encoder

use_mlla_encoder(model, S4_S5)
train.output_dir = "./output/mlla_rtdetr_t_mllaenc_s4s5_6x_coco"
