"""Datasets: COCO-format loading/registration and the embedded synthetic shapes dataset."""
from .coco import (
    ensure_dataset_files,
    get_dataset_dicts,
    load_coco_json_checked,
    register_coco_format,
    sanitize_dataset_dicts,
)
from .synthetic import (
    SYNTHETIC_CATEGORY_IDS,
    SYNTHETIC_CLASSES,
    SyntheticShapesConfig,
    default_cache_dir,
    ensure_synthetic_shapes,
    generate_synthetic_shapes,
    register_synthetic_shapes,
)

# The default embedded dataset: "synthetic_shapes_train" / "synthetic_shapes_val" (generated lazily).
register_synthetic_shapes()
