"""DEIM-D-FINE-S (official ``deim_dfine/deim_hgnetv2_s_coco.yml`` on ``dfine_hgnetv2_s_coco.yml``,
ShihuaHuang95/DEIM @ a9aa4ad) on COCO; the base of the other DEIM-D-FINE recipes.

The DEIM recipe base (``configs/common/deim.py``) with what the D-FINE-S YAMLs set:

* 132 epochs, total batch 32; Dense O2O policy epochs [4, 64, 120] (MixUp in [4, 64)); the
  multi-scale list repeats 640 twenty times (official ``base_size_repeat: 20``) until epoch 120;
* AdamW lr 4e-4 / betas (0.9, 0.999) / wd 1e-4; groups, first match: backbone parameters not
  named ``bn`` at 2e-4, every ``norm`` / ``bn`` parameter without weight decay (at 4e-4);
* flat-cosine: quadratic warm-up over 2000 iterations, flat until epoch 64, cosine to 0.5x at
  epoch 120 (= 132 - ``no_aug_epoch`` 12);
* EMA 0.9999 with a 1000-iteration warm-up (``base/optimizer.yml``), restarted from
  ``model_best.pth`` at epoch 120 with decay 0.9999; grad clip 0.1; AMP; evaluation at 640.

The model is ``models/deim_dfine_hgnetv2_s.py``. Nothing differs from the official YAML. The
backbone starts from D-FINE's ImageNet HGNetv2-B0 (``PPHGNetV2_B0_stage1.pth``)::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/deim_dfine_hgnetv2_s_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/PPHGNetV2_B0_stage1.pth
"""
from mlla_rtdetr.config import get_config

from .models.deim_dfine_hgnetv2_s import model  # noqa: F401

deim = get_config("common/deim.py")

dataloader = deim.dataloader
dataloader.train.total_batch_size = 32
dataloader.train.mapper.policy_epochs = [4, 64, 120]
dataloader.train.batch_augment.multiscale_sizes.base_repeat = 20

optimizer = deim.optimizer
optimizer.lr = 4e-4
optimizer.weight_decay = 1e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*bn).*$", lr=2e-4),
    dict(pattern=r"^(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]

lr_multiplier = deim.lr_multiplier

train = deim.train
train.epochs = 132
train.model_ema.warmups = 1000
train.model_ema.restart_decay = 0.9999
train.output_dir = "./output/deim_dfine_hgnetv2_s_coco"
