"""Data: datasets (COCO-format, embedded synthetic shapes), RT-DETR transforms and mapper,
deterministic resumable train loader, test loader, evaluator, and each dataset's class count.

Importing this package registers "synthetic_shapes_train" / "synthetic_shapes_val".
"""
from .checks import dataset_num_classes
from .datasets import (
    SYNTHETIC_CATEGORY_IDS,
    SYNTHETIC_CLASSES,
    SyntheticShapesConfig,
    default_cache_dir,
    ensure_dataset_files,
    ensure_synthetic_shapes,
    generate_synthetic_shapes,
    get_dataset_dicts,
    load_coco_json_checked,
    register_coco_format,
    register_synthetic_shapes,
    sanitize_dataset_dicts,
)
from .evaluation import build_coco_evaluator
from .image_io import read_image_rgb
from .loader import TrainLoader, build_test_loader, build_train_loader, sample_seed
from .mapper import RTDETRDatasetMapper
from .transforms import build_test_transforms, build_train_transforms, multiscale_sizes

__all__ = [k for k in globals() if not k.startswith("_")]
