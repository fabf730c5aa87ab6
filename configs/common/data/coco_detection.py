"""COCO 2017 detection data for RT-DETR style training (detectron2 LazyConfig).

``coco_2017_train`` / ``coco_2017_val`` are detectron2's builtin names: point
``DETECTRON2_DATASETS`` at the folder holding ``coco/``. Any other COCO-format dataset needs
no code, only overrides (``names`` is the name it is registered under)::

    dataloader.train.dataset.names=my_train \
    dataloader.train.dataset.json_file=/data/my/train.json \
    dataloader.train.dataset.image_root=/data/my/train \
    dataloader.test.dataset.names=my_val \
    dataloader.test.dataset.json_file=/data/my/val.json \
    dataloader.test.dataset.image_root=/data/my/val

The evaluator follows the test dataset through interpolation.
"""
from omegaconf import OmegaConf

from detectron2.config import LazyCall as L
from mlla_rtdetr.data import (
    RTDETRDatasetMapper,
    build_coco_evaluator,
    build_test_loader,
    build_train_loader,
    get_dataset_dicts,
    multiscale_sizes,
)

dataloader = OmegaConf.create()

dataloader.train = L(build_train_loader)(
    dataset=L(get_dataset_dicts)(
        names="coco_2017_train",
        json_file=None,  # set with image_root to register `names` as a COCO-format dataset
        image_root=None,
        filter_empty=False,  # images without boxes are kept as negatives (as official RT-DETR)
        check_images=False,  # True: fail at load time listing records whose image is missing
    ),
    mapper=L(RTDETRDatasetMapper)(
        is_train=True,
        image_size=(640, 640),  # (h, w) after Resize; multi-scale replaces it per batch
        photometric_p=0.5,
        zoom_out_p=0.5,
        zoom_out_fill=0,
        zoom_out_side_range=(1.0, 4.0),
        iou_crop_p=0.8,
        flip_p=0.5,
        min_box_size=1.0,
    ),
    total_batch_size=16,
    num_workers=4,
    # [480, 512, ..., 608, 640, 640, 640, 672, ..., 800] (official RT-DETR collate scales)
    multiscale_sizes=L(multiscale_sizes)(base=640, min_size=480, max_size=800, step=32, base_repeat=3),
    # from this epoch on: no photometric / zoom-out / IoU-crop and no multi-scale (official 71 of 72)
    stop_aug_epoch=71,
    seed=None,  # None: tools/train_net.py uses train.seed (so seed sweeps vary data order too)
)

dataloader.test = L(build_test_loader)(
    dataset=L(get_dataset_dicts)(
        names="coco_2017_val",
        json_file=None,
        image_root=None,
        filter_empty=False,
        check_images=False,
    ),
    mapper=L(RTDETRDatasetMapper)(is_train=False, image_size=(640, 640)),
    batch_size=8,  # per process
    num_workers=4,
)

dataloader.evaluator = L(build_coco_evaluator)(
    dataset_name="${..test.dataset.names}",
    json_file="${..test.dataset.json_file}",
    image_root="${..test.dataset.image_root}",
    output_dir=None,
)
