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

A Pascal VOC folder (``voc_root`` + ``split``) or an ultralytics ``data.yaml`` (``yolo_yaml`` +
``split``) is named the same way (see ``voc_detection.py`` / ``yolo_detection.py``). The
evaluator follows the test dataset through interpolation.
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
        json_file=None,  # where `names` lives (see mlla_rtdetr.data.get_dataset_dicts): COCO json ...
        image_root=None,  # ... and its image folder,
        voc_root=None,  # or a Pascal VOC folder,
        yolo_yaml=None,  # or an ultralytics data.yaml;
        split="train",  # the VOC split file / data.yaml entry to read
        class_names=None,  # None: the dataset's (filled in when the run starts, saved in config.yaml)
        filter_empty=False,  # images without boxes are kept as negatives (as official RT-DETR)
        check_images=True,  # stat every image file before training; stop listing the missing ones
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
    max_bad_image_share=0.01,  # undecodable images are skipped; the run stops past this share
)

dataloader.test = L(build_test_loader)(
    dataset=L(get_dataset_dicts)(
        names="coco_2017_val",
        json_file=None,
        image_root=None,
        voc_root="${...train.dataset.voc_root}",  # the test split of the same VOC folder ...
        yolo_yaml="${...train.dataset.yolo_yaml}",  # ... or data.yaml, unless set
        split="val",
        class_names=None,
        filter_empty=False,
        check_images=True,
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
