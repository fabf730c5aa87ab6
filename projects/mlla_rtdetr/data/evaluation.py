"""COCO evaluator builder for any dataset: COCO json, VOC, YOLO, registered names."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from .datasets.base import default_cache_dir, ensure_dataset_files, known_dataset_or_raise
from .datasets.catalog import register_dataset

__all__ = ["build_coco_evaluator", "ensure_coco_json"]


def ensure_coco_json(dataset_name: str) -> str:
    """Path of a COCO json of ``dataset_name`` (the ground truth COCO evaluation reads).

    COCO-format datasets have one; for the others (VOC, YOLO, Python registrations) the dataset
    dicts are converted with detectron2's ``convert_to_coco_dict`` into the cache folder, under a
    name made of the content's hash: concurrent processes write identical files, and a changed
    dataset never reads a stale conversion.
    """
    meta = MetadataCatalog.get(dataset_name)
    if getattr(meta, "json_file", None):
        return meta.json_file
    from detectron2.data.datasets.coco import convert_to_coco_dict

    coco = convert_to_coco_dict(dataset_name)
    coco["info"] = {"description": f"{dataset_name}, converted by mlla_rtdetr"}  # no date: a stable hash
    text = json.dumps(coco, sort_keys=True)
    digest = hashlib.sha1(text.encode()).hexdigest()[:16]
    path = os.path.join(str(default_cache_dir()), "coco_json", f"{dataset_name}-{digest}.json")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    meta.set(json_file=path)
    return path


def build_coco_evaluator(
    dataset_name: str,
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    output_dir: Optional[str] = None,
    distributed: bool = True,
    max_dets_per_image: Optional[int] = None,
) -> COCOEvaluator:
    """detectron2 ``COCOEvaluator`` (bbox) for ``dataset_name``.

    ``json_file``/``image_root`` register a COCO-format dataset first (as the test dataset config
    does); other datasets must be registered (the test loader or ``prepare_datasets`` did it).
    """
    if json_file is not None and image_root is not None:
        register_dataset(dataset_name, json_file=json_file, image_root=image_root)
    known_dataset_or_raise(dataset_name)
    ensure_dataset_files(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "thing_classes") or (
        getattr(meta, "json_file", None) and not hasattr(meta, "thing_dataset_id_to_contiguous_id")
    ):
        DatasetCatalog.get(dataset_name)  # loading sets the classes and the dataset-id mapping
    ensure_coco_json(dataset_name)
    return COCOEvaluator(
        dataset_name, tasks=("bbox",), distributed=distributed, output_dir=output_dir,
        max_dets_per_image=max_dets_per_image,
    )
