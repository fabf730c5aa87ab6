"""RT-DETRv2-S (R18) with discrete sampling (official ``rtdetrv2_r18vd_dsp_3x_coco.yml``).

The ``rtdetrv2_r18vd_120e_coco.py`` recipe with ``cross_attn_method="discrete"``: the decoder's
deformable cross-attention reads the feature pixel nearest to each sampling location instead of
interpolating with ``grid_sample`` (deployable where ``grid_sample`` is slow or missing, e.g.
TensorRT < 8.5); the sampling offsets are frozen. As the official recipe, it fine-tunes the trained
grid-sampling model ``rtdetrv2_r18vd_120e_coco.pth`` for 36 epochs; strong augmentation stops at
epoch 33 (no multi-scale, as in the base recipe).

``train.init_checkpoint`` is the official URL: downloaded once into ``$MLLA_RTDETR_CACHE/checkpoints``, the file
is recognised as an official checkpoint and converted (EMA weights preferred). Offline: download it
and pass ``train.init_checkpoint=/path/to/rtdetrv2_r18vd_120e_coco.pth``.
"""
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.decoder.cross_attn_method = "discrete"
dataloader.train.stop_aug_epoch = 33
train.epochs = 36
train.init_checkpoint = "https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetrv2_r18vd_120e_coco.pth"
train.output_dir = "./output/rtdetrv2_r18vd_dsp_3x_coco"
