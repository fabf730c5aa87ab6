"""Data: datasets (COCO json, Pascal VOC, ultralytics YOLO, embedded synthetic shapes), their
preparation and checks before a run, RT-DETR transforms and mapper (and DEIM's Dense O2O: Mosaic, epoch policy, MixUp), the deterministic resumable
train loader (which skips undecodable images deterministically), the test loader and evaluator.

Importing this package registers "synthetic_shapes_train" / "synthetic_shapes_val".
"""
from .batch_augment import DenseO2OBatchAugment
from .checks import check_image_files, listing, stat_image_files
from .datasets import (
    SOURCE_FIELDS,
    SYNTHETIC_CATEGORY_IDS,
    SYNTHETIC_CLASSES,
    SyntheticShapesConfig,
    dataset_classes,
    dataset_format,
    default_cache_dir,
    ensure_dataset_files,
    ensure_synthetic_shapes,
    generate_synthetic_shapes,
    get_dataset_dicts,
    load_coco_json_checked,
    load_voc_checked,
    load_yolo,
    read_yolo_yaml,
    register_coco_format,
    register_dataset,
    register_synthetic_shapes,
    register_voc,
    register_yolo,
    release_held_dicts,
    sanitize_dataset_dicts,
)
from .coco_evaluator import FastCOCOEvaluator, build_coco_evaluator, has_faster_coco_eval
from .coco_json import ensure_coco_json
from .image_io import read_image_rgb, read_image_size
from .loader import TestLoader, TrainLoader, build_test_loader, build_train_loader, sample_seed
from .mapper import DenseO2ODatasetMapper, RTDETRDatasetMapper
from .prepare import PreparedDataset, config_class_names, dataset_nodes, prepare_datasets, register_node
from .summary import DatasetSummary, summarize_dataset
from .transforms import Mosaic, build_test_transforms, build_train_transforms, multiscale_sizes

__all__ = [k for k in globals() if not k.startswith("_")]
