"""Dataset dict -> model input dict (see the model contract in CONTRACTS.md)."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchvision import tv_tensors

from detectron2.structures import BoxMode, Boxes, Instances

from torchvision.transforms.v2 import functional as TF

from ..errors import DataError
from .image_io import read_image_pil
from .transforms import build_test_transforms, build_train_transforms, to_hw

__all__ = ["RTDETRDatasetMapper", "annotations_to_xyxy"]


def annotations_to_xyxy(annotations: Sequence[Dict[str, Any]]) -> Tuple[np.ndarray, np.ndarray]:
    """Non-crowd annotations -> (boxes (N, 4) float32 XYXY_ABS, classes (N,) int64)."""
    boxes, classes = [], []
    for ann in annotations:
        if ann.get("iscrowd", 0):
            continue
        boxes.append(BoxMode.convert(list(ann["bbox"]), ann.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS))
        classes.append(int(ann["category_id"]))
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(classes, dtype=np.int64).reshape(-1),
    )


class RTDETRDatasetMapper:
    """Reads the image, applies the RT-DETR transforms and builds the model input.

    Output dict: ``image`` (3, h, w) uint8 RGB of the transformed image; ``instances``
    (train only) with ``gt_boxes`` XYXY absolute pixels of the transformed image and
    ``gt_classes`` int64 contiguous ids (crowd boxes excluded); ``height``/``width`` the
    original image size; ``image_id``; ``file_name``.

    Called by the train loader as ``mapper(d, image_size=(h, w), strong_augment=bool)``; a
    plain ``mapper(d)`` uses the configured ``image_size`` and the full augmentation.
    """

    def __init__(
        self,
        is_train: bool = True,
        image_size: Optional[Union[int, Sequence[int]]] = (640, 640),
        photometric_p: float = 0.5,
        zoom_out_p: float = 0.5,
        zoom_out_fill: float = 0,
        zoom_out_side_range: Sequence[float] = (1.0, 4.0),
        iou_crop_p: float = 0.8,
        flip_p: float = 0.5,
        min_box_size: float = 1.0,
    ):
        self.is_train = bool(is_train)
        self.image_size = None if image_size is None else to_hw(image_size)
        if self.is_train and self.image_size is None:
            raise ValueError("RTDETRDatasetMapper(is_train=True) needs an image_size: batches have one size.")
        self.aug_kwargs = dict(
            photometric_p=float(photometric_p),
            zoom_out_p=float(zoom_out_p),
            zoom_out_fill=zoom_out_fill,
            zoom_out_side_range=tuple(float(s) for s in zoom_out_side_range),
            iou_crop_p=float(iou_crop_p),
            flip_p=float(flip_p),
            min_box_size=float(min_box_size),
        )
        self._cache: Dict[Any, Any] = {}

    def transforms(self, image_size: Optional[Tuple[int, int]] = None, strong_augment: bool = True):
        """The (cached) v2 pipeline for one output size and augmentation strength."""
        size = self.image_size if image_size is None else to_hw(image_size)
        key = (self.is_train, size, bool(strong_augment))
        if key not in self._cache:
            if self.is_train:
                self._cache[key] = build_train_transforms(size, strong=strong_augment, **self.aug_kwargs)
            else:
                self._cache[key] = build_test_transforms(size)
        return self._cache[key]

    def __call__(
        self,
        dataset_dict: Dict[str, Any],
        image_size: Optional[Sequence[int]] = None,
        strong_augment: bool = True,
    ) -> Dict[str, Any]:
        d = copy.copy(dataset_dict)
        file_name = d["file_name"]
        try:
            image = read_image_pil(file_name)
        except (FileNotFoundError, OSError) as e:
            raise type(e)(f"{e} (dataset record image_id={d.get('image_id')!r})") from None
        w, h = image.size
        if "height" in d and "width" in d and (d["height"], d["width"]) != (h, w):
            raise DataError(
                f"Image {file_name} (image_id={d.get('image_id')!r}) is {w}x{h} (w x h, EXIF "
                f"orientation applied) but its dataset record says {d['width']}x{d['height']}."
            )
        out = {
            "file_name": file_name,
            "image_id": d.get("image_id"),
            "height": int(d.get("height", h)),
            "width": int(d.get("width", w)),
        }
        transforms = self.transforms(image_size, strong_augment)
        if not self.is_train:
            out["image"] = TF.pil_to_tensor(transforms(image)).contiguous()
            return out

        boxes, classes = annotations_to_xyxy(d.get("annotations", []))
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, classes = boxes[keep], classes[keep]
        sample = {
            "image": image,  # PIL through the v2 ops (as official): fast single-threaded C kernels
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(h, w)),
            "labels": torch.from_numpy(classes),
        }
        sample = transforms(sample)
        img = TF.pil_to_tensor(sample["image"]).contiguous()
        instances = Instances(tuple(img.shape[-2:]))
        instances.gt_boxes = Boxes(sample["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4))
        instances.gt_classes = sample["labels"].to(torch.int64)
        out["image"] = img
        out["instances"] = instances
        return out
