"""MLLA DEIM-RT-DETRv2-S: DEIM-RT-DETRv2-R18 with MLLA from the stride-16 stage on, at the cost of
the baseline (model zoo README, "MLLA on D-FINE and DEIM": 0.88x its GFLOPs).

The placement of ``mlla_hybrid_enc_s5_r18vd_120e_coco.py``, the two best single placements of the
RT-DETR placement study together: a hybrid backbone (ResNet-18-vd whose res4 and res5 are MLLA
stages: ResNet-vd downsampling, then one MLLA block of 256 / 512 channels) and the MLLA intra-scale
block on S5 instead of AIFI. The model's DEIM changes (MAL, SiLU decoder, trainable BatchNorm)
and every training setting (Dense O2O, flat-cosine, EMA restart) are those of
``deim_rtdetrv2_r18vd_120e_coco.py`` (imported, not copied).

Init: the hybrid backbone's ImageNet file, written as for ``mlla_hybrid_r18vd_120e_coco.py`` (see
there; ``tools/convert_mlla_checkpoint.py --target hybrid ... --config`` this recipe), then
``train.init_checkpoint=weights/hybrid_r18_in1k.pth``; the intra-scale block trains from scratch
like AIFI.
"""
from .deim_rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .models.mlla_placements import use_mlla_stages
from .models.mlla_rtdetr_encoder import S5, use_mlla_encoder

use_mlla_stages(model, stages=("res4", "res5"), depth=1)
use_mlla_encoder(model, S5)
train.output_dir = "./output/mlla_deim_rtdetrv2_r18vd_120e_coco"
