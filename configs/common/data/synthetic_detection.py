"""The embedded ``synthetic_shapes`` dataset: no download, generated on first use.

Five shape classes (distinct shape and colour) on mildly textured 256 px backgrounds,
1600 train / 200 val images, cached under ``$MLLA_RTDETR_CACHE`` (default
``~/.cache/mlla_rtdetr``). Sizes are scaled to the 256 px model input: multi-scale
192..320 (step 32, 256 repeated three times).
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
        names="synthetic_shapes_train",
        json_file=None,
        image_root=None,
        voc_root=None,
        yolo_yaml=None,
        split="train",
        class_names=None,
        filter_empty=False,
        check_images=True,
    ),
    mapper=L(RTDETRDatasetMapper)(
        is_train=True,
        image_size=(256, 256),
        photometric_p=0.5,
        zoom_out_p=0.5,
        zoom_out_fill=0,
        zoom_out_side_range=(1.0, 2.0),  # objects are already small at 256 px
        iou_crop_p=0.8,
        flip_p=0.5,
        min_box_size=1.0,
    ),
    total_batch_size=16,
    num_workers=2,
    multiscale_sizes=L(multiscale_sizes)(base=256, min_size=192, max_size=320, step=32, base_repeat=3),
    stop_aug_epoch=1000,  # recipes set it to their last epochs (e.g. epochs - 1)
    seed=None,  # None: tools/train_net.py uses train.seed (so seed sweeps vary data order too)
    max_bad_image_share=0.01,  # undecodable images are skipped; the run stops past this share
)

dataloader.test = L(build_test_loader)(
    dataset=L(get_dataset_dicts)(
        names="synthetic_shapes_val",
        json_file=None,
        image_root=None,
        voc_root="${...train.dataset.voc_root}",  # the test split of the same VOC folder ...
        yolo_yaml="${...train.dataset.yolo_yaml}",  # ... or data.yaml, unless set
        split="val",
        class_names=None,
        filter_empty=False,
        check_images=True,
    ),
    mapper=L(RTDETRDatasetMapper)(is_train=False, image_size=(256, 256)),
    batch_size=16,
    num_workers=0,
)

dataloader.evaluator = L(build_coco_evaluator)(
    dataset_name="${..test.dataset.names}",
    json_file="${..test.dataset.json_file}",
    image_root="${..test.dataset.image_root}",
    output_dir=None,
)
