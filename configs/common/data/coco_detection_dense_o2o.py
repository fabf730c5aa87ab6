"""COCO detection with DEIM's "Dense O2O" train pipeline (DEIM, CVPR 2025; official
``deim_rtdetrv2/deim_r18vd_120e_coco.yml``), on top of ``coco_detection.py``.

* per sample (:class:`~mlla_rtdetr.data.DenseO2ODatasetMapper`): the 4-stage epoch policy
  ``policy_epochs=[4, 64, 117]``: no augmentation before epoch 4; Mosaic (3 partner images drawn
  from the training set, short side 320, affine: rotation 10 deg, translation 0.1, scale 0.5-1.5)
  with probability 0.5 in [4, 64) in place of ZoomOut / IoUCrop; the RT-DETR augmentations
  until 117; none after. Every image is then resized to 640 x 640.
* per batch (:class:`~mlla_rtdetr.data.DenseO2OBatchAugment`): MixUp with probability 0.5 in
  epochs [4, 64), then one multi-scale size for the batch ([480 ... 640] with 640 three times,
  then [800 ... 672], the official order; nearest-neighbour) until the stop epoch.

The recipe length must fit the policy: official DEIM trains 120 epochs with
``policy_epochs=[4, 64, 117]`` and ``mixup_epochs=[4, 64]`` (DEIM-D-FINE-S: 132 epochs,
``[4, 64, 120]``). ``multiscale_stop_epoch`` follows ``policy_epochs[2]``; the flat-cosine
schedule and the EMA restart of ``common/deim_schedule.py`` read the same two numbers.
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.config import get_config
from mlla_rtdetr.data import DenseO2OBatchAugment, DenseO2ODatasetMapper, multiscale_sizes

dataloader = get_config("common/data/coco_detection.py").dataloader

# the RT-DETR mapper's settings (640 x 640, photometric 0.5, ZoomOut, IoUCrop 0.8, flip) plus the policy
dataloader.train.mapper._target_ = DenseO2ODatasetMapper
# [start augmenting, stop Mosaic, stop augmenting] (epochs)
dataloader.train.mapper.policy_epochs = [4, 64, 117]
dataloader.train.mapper.mosaic_prob = 0.5
dataloader.train.mapper.mosaic_output_size = 320
dataloader.train.mapper.mosaic_rotation = 10.0
dataloader.train.mapper.mosaic_translate = (0.1, 0.1)
dataloader.train.mapper.mosaic_scale = (0.5, 1.5)
dataloader.train.mapper.mosaic_fill = 0
# DEIM resizes every sample to 640 and rescales the batch in the collate instead.
dataloader.train.multiscale_sizes = None
dataloader.train.stop_aug_epoch = None  # the mapper's policy_epochs decide
dataloader.train.batch_augment = L(DenseO2OBatchAugment)(
    mixup_prob=0.5,
    mixup_epochs=[4, 64],
    multiscale_sizes=L(multiscale_sizes)(
        base=640, min_size=480, max_size=800, step=32, base_repeat=3, upper_descending=True
    ),
    multiscale_stop_epoch="${..mapper.policy_epochs[2]}",
)
