"""The COCO json ground truth of any dataset (COCO json, VOC, YOLO, registered names), which COCO
evaluation reads."""
from __future__ import annotations

import hashlib
import json
import os

from detectron2.data import MetadataCatalog

from .datasets.base import default_cache_dir

__all__ = ["ensure_coco_json"]


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
