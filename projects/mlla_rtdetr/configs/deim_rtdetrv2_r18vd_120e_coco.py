"""DEIM-RT-DETRv2-S (official ``deim_rtdetrv2/deim_r18vd_120e_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad)
on COCO.

The DEIM recipe base (``configs/common/deim.py``) holds exactly this YAML's training settings:
120 epochs, total batch 16, Dense O2O data (policy epochs [4, 64, 117], Mosaic 0.5, MixUp 0.5 in
epochs [4, 64), multi-scale [480 ... 800] until 117), AdamW lr 2e-4 / betas (0.9, 0.999) / wd 1e-4
with no weight decay on any norm (backbone at the base lr), flat-cosine schedule (quadratic
warm-up over 2000 iterations, flat until epoch 64, cosine to 0.5x at 117), EMA 0.9999 with a
2000-iteration warm-up restarted from ``model_best.pth`` at epoch 117 (decay 0.9999), grad clip
0.1, AMP, evaluation at 640 x 640. The model is DEIM-RT-DETRv2-R18 (``models/deim_rtdetrv2_r18vd.py``:
MAL loss, SiLU decoder, trainable BatchNorm). Nothing differs from the official YAML.

The backbone starts from ImageNet (``ResNet18_vd_pretrained_from_paddle.pth``)::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/deim_rtdetrv2_r18vd_120e_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/ResNet18_vd_pretrained_from_paddle.pth
"""
from mlla_rtdetr.config import get_config

from .models.deim_rtdetrv2_r18vd import model  # noqa: F401

deim = get_config("common/deim.py")
dataloader, optimizer, lr_multiplier, train = deim.dataloader, deim.optimizer, deim.lr_multiplier, deim.train
train.output_dir = "./output/deim_rtdetrv2_r18vd_120e_coco"
