"""COCO evaluator builder that works for any registered or config-given COCO-format dataset."""
from __future__ import annotations

from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from .datasets.coco import _known_dataset_or_raise, ensure_dataset_files, register_coco_format

__all__ = ["build_coco_evaluator"]


def build_coco_evaluator(
    dataset_name: str,
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    output_dir: Optional[str] = None,
    distributed: bool = True,
    max_dets_per_image: Optional[int] = None,
) -> COCOEvaluator:
    """detectron2 ``COCOEvaluator`` (bbox) for ``dataset_name``.

    ``json_file``/``image_root`` register it first (as the test dataset config does); generated
    datasets are materialized so the evaluator can read their json.
    """
    if json_file is not None and image_root is not None:
        register_coco_format(dataset_name, json_file, image_root)
    _known_dataset_or_raise(dataset_name)
    ensure_dataset_files(dataset_name)
    if not hasattr(MetadataCatalog.get(dataset_name), "thing_dataset_id_to_contiguous_id"):
        # Loading sets the mapping that turns contiguous predictions back into dataset ids.
        DatasetCatalog.get(dataset_name)
    return COCOEvaluator(
        dataset_name, tasks=("bbox",), distributed=distributed, output_dir=output_dir,
        max_dets_per_image=max_dets_per_image,
    )
