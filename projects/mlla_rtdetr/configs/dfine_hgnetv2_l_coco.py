"""D-FINE-L (official ``deim_dfine/dfine_hgnetv2_l_coco.yml``, ShihuaHuang95/DEIM @ a9aa4ad) on COCO;
the base of the other D-FINE recipes.

D-FINE's own recipe: the RT-DETR data pipeline (``common/data/coco_detection.py``: photometric
distortion 0.5, zoom-out, IoU crop 0.8, flip, 640 x 640; no Mosaic, no MixUp) and the optimizer
pieces of the RT-DETRv2 recipes, with the D-FINE-L values:

* 80 epochs, total batch 32; augmentation and multi-scale stop at epoch 72; multi-scale
  [480 ... 608, 640 x 4, 800 ... 672] (official ``base_size_repeat: 4``, in the official order);
* AdamW lr 2.5e-4 / betas (0.9, 0.999) / wd 1.25e-4; backbone parameters not named ``norm`` at
  1.25e-5, encoder / decoder ``norm`` / ``bn`` parameters without weight decay;
* the DEIM code's schedule of every D-FINE YAML (``flatcosine`` with ``lr_gamma`` 1,
  ``warmup_iter`` 500, ``flat_epoch`` 4000000): a quadratic warm-up over 500 iterations, then
  constant;
* EMA 0.9999 with a 1000-iteration warm-up, restarted from ``model_best.pth`` at the stop epoch
  (72) with decay 0.9999 (official ``ema_restart_decay``); grad clip 0.1; AMP; evaluation at 640.

The model is ``models/dfine_hgnetv2_l.py`` (HGNetv2-B4, stem frozen). Nothing differs from the
official YAML. The backbone starts from D-FINE's ImageNet HGNetv2-B4 (``PPHGNetV2_B4_stage1.pth``)::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/dfine_hgnetv2_l_coco.py \\
        --num-gpus 8 train.init_checkpoint=weights/PPHGNetV2_B4_stage1.pth
"""
from mlla_rtdetr.config import get_config

from .models.dfine_hgnetv2_l import model  # noqa: F401

dataloader = get_config("common/data/coco_detection.py").dataloader
dataloader.train.total_batch_size = 32
dataloader.train.stop_aug_epoch = 72
dataloader.train.multiscale_sizes.base_repeat = 4
dataloader.train.multiscale_sizes.upper_descending = True

optimizer = get_config("common/optim.py").AdamW_rtdetr_v2
optimizer.lr = 2.5e-4
optimizer.weight_decay = 1.25e-4
optimizer.params.rules = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm|bn).*$", lr=1.25e-5),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]

lr_multiplier = get_config("common/schedule.py").deim_flat_cosine
lr_multiplier.warmup = 500
lr_multiplier.flat = 4000000  # epochs: never reached, the lr stays at the base value
lr_multiplier.decay_end = None
lr_multiplier.min_factor = 1.0  # official lr_gamma 1

train = get_config("common/train.py").train
train.epochs = 80
train.clip_grad.max_norm = 0.1
train.model_ema.decay = 0.9999
train.model_ema.warmups = 1000
train.model_ema.restart_epoch = "${dataloader.train.stop_aug_epoch}"
train.model_ema.restart_decay = 0.9999
train.amp.enabled = True
train.output_dir = "./output/dfine_hgnetv2_l_coco"
