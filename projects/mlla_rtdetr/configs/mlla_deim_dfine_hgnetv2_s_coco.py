"""MLLA DEIM-D-FINE-S: DEIM-D-FINE-S with the MLLA intra-scale block on S5 instead of AIFI, at the
cost of the baseline (model zoo README, "MLLA on D-FINE and DEIM": 1.00x its GFLOPs).

Why this placement: of the RT-DETR placement study's two best single placements (the hybrid
backbone and MLLA on S5), the hybrid backbone does not fit D-FINE-S's budget. HGNetv2-B0's res4 /
res5 are 512 / 1024 channels wide but light (depthwise HG blocks), so one MLLA block there costs
1.79x the model's GFLOPs (res5 alone 1.42x; attention-only layers after res4 / res5 1.34x), while
MLLA on S5 costs what AIFI costs. Everything else - HGNetv2-B0, the D-FINE encoder (CSP-ELAN
fusion, SCDown) and decoder, DEIM's changes and every training setting - is
``deim_dfine_hgnetv2_s_coco.py`` (imported, not copied).

Init: the backbone from D-FINE's ImageNet HGNetv2-B0, as the baseline; the intra-scale block
trains from scratch like AIFI::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_deim_dfine_hgnetv2_s_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/PPHGNetV2_B0_stage1.pth
"""
from .deim_dfine_hgnetv2_s_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401
from .models.mlla_rtdetr_encoder import S5, use_mlla_encoder

use_mlla_encoder(model, S5)
train.output_dir = "./output/mlla_deim_dfine_hgnetv2_s_coco"
