"""Datasets: one entry point (``get_dataset_dicts``) for COCO json, Pascal VOC folders and
ultralytics YOLO layouts, the embedded synthetic shapes dataset and the photo-paste generator."""
from .base import default_cache_dir, ensure_dataset_files, known_dataset_or_raise, register_materializer
from .catalog import (
    SOURCE_FIELDS,
    dataset_classes,
    dataset_format,
    get_dataset_dicts,
    hold_dataset_dicts,
    register_dataset,
    release_held_dicts,
    sanitize_dataset_dicts,
)
from .coco import load_coco_json_checked, register_coco_format
from .photo_paste import PHOTO_CLASSES, PhotoPasteConfig, generate_photo_paste
from .synthetic import (
    SYNTHETIC_CATEGORY_IDS,
    SYNTHETIC_CLASSES,
    SyntheticShapesConfig,
    ensure_synthetic_shapes,
    generate_synthetic_shapes,
    register_synthetic_shapes,
)
from .voc import diagnose_voc, load_voc_checked, register_voc, voc_class_names, voc_splits
from .yolo import YoloDataset, load_yolo, parse_yolo_labels, read_yolo_yaml, register_yolo, yolo_label_file

# The default embedded dataset: "synthetic_shapes_train" / "synthetic_shapes_val" (generated lazily).
register_synthetic_shapes()
