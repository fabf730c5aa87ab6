"""Dataset dict -> model input dict (see the model contract in CONTRACTS.md)."""
from __future__ import annotations

import random
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torchvision import tv_tensors

from detectron2.structures import BoxMode, Boxes, Instances

from torchvision.transforms.v2 import functional as TF

from ..errors import DataError
from .image_io import read_image_pil
from .transforms import Mosaic, build_test_transforms, build_train_transforms, to_hw

__all__ = ["RTDETRDatasetMapper", "DenseO2ODatasetMapper", "annotations_to_xyxy"]


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

    def load_sample(self, dataset_dict: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Read a record: ``(sample, meta)``, the sample dict before augmentation (PIL image,
        ``BoundingBoxes`` XYXY clipped to the image, non-empty, crowd boxes dropped, as official
        ``ConvertCocoPolysToMask``; int64 ``labels``) and the output fields of the record."""
        file_name = dataset_dict["file_name"]
        try:
            image = read_image_pil(file_name)
        except (FileNotFoundError, OSError) as e:
            raise type(e)(f"{e} (dataset record image_id={dataset_dict.get('image_id')!r})") from None
        w, h = image.size
        if "height" in dataset_dict and "width" in dataset_dict and (dataset_dict["height"], dataset_dict["width"]) != (h, w):
            raise DataError(
                f"Image {file_name} (image_id={dataset_dict.get('image_id')!r}) is {w}x{h} (w x h, EXIF "
                f"orientation applied) but its dataset record says {dataset_dict['width']}x{dataset_dict['height']}."
            )
        meta = {
            "file_name": file_name,
            "image_id": dataset_dict.get("image_id"),
            "height": int(dataset_dict.get("height", h)),
            "width": int(dataset_dict.get("width", w)),
        }
        boxes, classes = annotations_to_xyxy(dataset_dict.get("annotations", []))
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, classes = boxes[keep], classes[keep]
        sample = {
            "image": image,  # PIL through the v2 ops (as official): fast single-threaded C kernels
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY", canvas_size=(h, w)),
            "labels": torch.from_numpy(classes),
        }
        return sample, meta

    @staticmethod
    def model_input(sample: Dict[str, Any], meta: Dict[str, Any]) -> Dict[str, Any]:
        """Transformed sample -> model input dict (uint8 image, ``instances`` in its pixels)."""
        img = TF.pil_to_tensor(sample["image"]).contiguous()
        instances = Instances(tuple(img.shape[-2:]))
        instances.gt_boxes = Boxes(sample["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4))
        instances.gt_classes = sample["labels"].to(torch.int64)
        return dict(meta, image=img, instances=instances)

    def __call__(
        self,
        dataset_dict: Dict[str, Any],
        image_size: Optional[Sequence[int]] = None,
        strong_augment: bool = True,
    ) -> Dict[str, Any]:
        transforms = self.transforms(image_size, strong_augment)
        if not self.is_train:
            sample, meta = self.load_sample(dict(dataset_dict, annotations=[]))
            return dict(meta, image=TF.pil_to_tensor(transforms(sample["image"])).contiguous())
        sample, meta = self.load_sample(dataset_dict)
        return self.model_input(transforms(sample), meta)


class _RecordSamples:
    """``Sequence`` view of dataset records as un-augmented samples (Mosaic's partners)."""

    def __init__(self, records: Sequence[Dict[str, Any]], mapper: RTDETRDatasetMapper):
        self.records = records
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return self.mapper.load_sample(self.records[index])[0]


class DenseO2ODatasetMapper(RTDETRDatasetMapper):
    """DEIM's "Dense O2O" train mapper: the RT-DETR mapper with Mosaic and DEIM's 4-stage epoch
    policy (official ``deim_r18vd_120e_coco``: ``policy_epochs=(4, 64, 117)``).

    ============================  ===============================================================
    epoch                         pipeline
    ============================  ===============================================================
    ``< policy_epochs[0]``        no augmentation: flip + resize + sanitize
    ``[p0, p1)``                  with probability ``mosaic_prob`` (``random.random() <= p``):
                                  Mosaic + photometric (no ZoomOut / IoUCrop); else the RT-DETR
                                  strong pipeline
    ``[p1, p2)``                  the RT-DETR strong pipeline
    ``>= policy_epochs[2]``       no augmentation
    ============================  ===============================================================

    Called by the train loader as ``mapper(d, image_size, strong_augment, epoch=e)`` (it binds
    the dataset the Mosaic partners are drawn from with :meth:`bind_dataset`); ``strong_augment
    =False`` (the loader's ``stop_aug_epoch``) also means no augmentation. ``epoch=None`` is the
    RT-DETR strong pipeline. The Mosaic choice and partners use Python's ``random``, everything
    else torch's generator (the loader seeds both per sample).
    """

    takes_epoch = True

    def __init__(
        self,
        *args: Any,
        policy_epochs: Sequence[int] = (4, 64, 117),
        mosaic_prob: float = 0.5,
        mosaic_output_size: int = 320,
        mosaic_rotation: float = 10.0,
        mosaic_translate: Sequence[float] = (0.1, 0.1),
        mosaic_scale: Sequence[float] = (0.5, 1.5),
        mosaic_fill: float = 0,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if not self.is_train:
            raise ValueError("DenseO2ODatasetMapper is a train mapper; use RTDETRDatasetMapper(is_train=False).")
        epochs = [int(e) for e in policy_epochs]
        if len(epochs) != 3 or epochs != sorted(epochs) or epochs[0] < 0:
            raise ValueError(f"policy_epochs must be 3 non-decreasing epochs [start_aug, stop_mosaic, stop_aug], "
                             f"got {list(policy_epochs)}")
        if not 0.0 <= float(mosaic_prob) <= 1.0:
            raise ValueError(f"mosaic_prob must be in [0, 1], got {mosaic_prob}")
        self.policy_epochs = tuple(epochs)
        self.mosaic_prob = float(mosaic_prob)
        self.mosaic = Mosaic(mosaic_output_size, rotation=mosaic_rotation, translate=mosaic_translate,
                             scale=mosaic_scale, fill=mosaic_fill)

    def bind_dataset(self, records: Sequence[Dict[str, Any]]) -> None:
        """The records Mosaic draws its three partner images from (the training set)."""
        self.mosaic.source = _RecordSamples(records, self)

    def stage(self, epoch: Optional[int]) -> str:
        """``"none"``, ``"mosaic"`` (Mosaic allowed) or ``"strong"`` for ``epoch``."""
        if epoch is None:
            return "strong"
        start, stop_mosaic, stop = self.policy_epochs
        if epoch < start or epoch >= stop:
            return "none"
        return "mosaic" if epoch < stop_mosaic else "strong"

    def pipeline(self, image_size: Optional[Sequence[int]], kind: str):
        """The (cached) v2 pipeline ``kind`` = "none" / "strong" / "mosaic" for one output size."""
        size = self.image_size if image_size is None else to_hw(image_size)
        key = ("dense_o2o", size, kind)
        if key not in self._cache:
            self._cache[key] = build_train_transforms(
                size, strong=kind != "none", mosaic=self.mosaic if kind == "mosaic" else None, **self.aug_kwargs
            )
        return self._cache[key]

    def __call__(
        self,
        dataset_dict: Dict[str, Any],
        image_size: Optional[Sequence[int]] = None,
        strong_augment: bool = True,
        epoch: Optional[int] = None,
    ) -> Dict[str, Any]:
        kind = self.stage(epoch) if strong_augment else "none"
        if kind == "mosaic" and not random.random() <= self.mosaic_prob:
            kind = "strong"
        sample, meta = self.load_sample(dataset_dict)
        return self.model_input(self.pipeline(image_size, kind)(sample), meta)
