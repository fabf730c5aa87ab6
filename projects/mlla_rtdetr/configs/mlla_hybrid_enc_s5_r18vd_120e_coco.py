"""RT-DETRv2-R18 with MLLA from the stride-16 stage on: the hybrid backbone of
``mlla_hybrid_r18vd_120e_coco.py`` (res4 and res5 are MLLA stages) and the MLLA intra-scale block
on S5 instead of AIFI (as ``mlla_enc_r18vd_s5_120e_coco.py``). Everything else is
``rtdetrv2_r18vd_120e_coco.py`` (imported through the hybrid recipe, not copied).

Init: the hybrid backbone's ImageNet file (``tools/convert_mlla_checkpoint.py --target hybrid``,
see ``mlla_hybrid_r18vd_120e_coco.py``; pass this recipe as ``--config``); the intra-scale block
trains from scratch like AIFI.
"""
from .mlla_hybrid_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .models.mlla_rtdetr_encoder import S5, use_mlla_encoder

use_mlla_encoder(model, S5)
train.output_dir = "./output/mlla_hybrid_enc_s5_r18vd_120e_coco"
