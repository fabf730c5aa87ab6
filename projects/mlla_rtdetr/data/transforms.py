"""RT-DETR training / test transforms on torchvision.transforms.v2.

A sample is a dict ``{"image": tv_tensors.Image (3, H, W) uint8, "boxes":
tv_tensors.BoundingBoxes (N, 4) XYXY absolute, "labels": int64 (N,)}``; every op keeps the
three consistent (v2 transforms dispatch on the tv_tensor types).

Train pipeline (official RT-DETR v2 order)::

    RandomPhotometricDistort(p) -> RandomZoomOut(fill) -> RandomIoUCrop(p)
    -> SanitizeBoundingBoxes(min_size) -> RandomHorizontalFlip -> Resize(size)
    -> SanitizeBoundingBoxes(min_size)

The first four are the "strong" ops that the stop-augmentation epoch switches off.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torchvision.transforms import v2 as T

__all__ = [
    "RandomIoUCrop",
    "build_train_transforms",
    "build_test_transforms",
    "multiscale_sizes",
    "to_hw",
]


def to_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``640`` or ``(h, w)`` (list / ListConfig accepted) -> ``(h, w)`` ints."""
    if isinstance(size, int):
        return (size, size)
    size = [int(s) for s in size]
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"Image size must be an int or (height, width) of positive ints, got {size}")
    return (size[0], size[1])


def multiscale_sizes(
    base: int = 640, min_size: int = 480, max_size: int = 800, step: int = 32, base_repeat: int = 3
) -> List[int]:
    """Batch-level training sizes of official RT-DETR: ``min_size..max_size`` by ``step`` with
    ``base`` occurring ``base_repeat`` times, e.g. ``[480, 512, ..., 608, 640, 640, 640, 672, ..., 800]``.
    """
    if step <= 0 or min_size > base or base > max_size:
        raise ValueError(
            f"multiscale_sizes needs step > 0 and min_size <= base <= max_size, "
            f"got base={base} min_size={min_size} max_size={max_size} step={step}"
        )
    if (base - min_size) % step:
        raise ValueError(f"base ({base}) - min_size ({min_size}) must be a multiple of step ({step})")
    sizes = list(range(min_size, max_size + 1, step))
    i = sizes.index(base)
    return sizes[:i] + [base] * max(1, base_repeat) + sizes[i + 1 :]


class RandomIoUCrop(T.RandomIoUCrop):
    """``torchvision.transforms.v2.RandomIoUCrop`` applied with probability ``p``.

    Samples without boxes are left as they are (the IoU criterion is undefined for them).
    """

    def __init__(self, p: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.p = float(p)

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        if torch.rand(1).item() >= self.p:
            return sample
        if isinstance(sample, dict) and "boxes" in sample and sample["boxes"].shape[0] == 0:
            return sample
        return super().forward(*inputs)


def build_train_transforms(
    image_size: Union[int, Sequence[int]],
    strong: bool = True,
    photometric_p: float = 0.5,
    zoom_out_p: float = 0.5,
    zoom_out_fill: float = 0,
    zoom_out_side_range: Sequence[float] = (1.0, 4.0),
    iou_crop_p: float = 0.8,
    flip_p: float = 0.5,
    min_box_size: float = 1.0,
) -> T.Compose:
    """The RT-DETR train pipeline resizing to ``image_size`` (h, w).

    ``strong=False`` is the post stop-augmentation-epoch pipeline: flip + resize + sanitize only.
    """
    ops: List[Any] = []
    if strong:
        ops += [
            T.RandomPhotometricDistort(p=photometric_p),
            T.RandomZoomOut(fill=zoom_out_fill, side_range=tuple(float(s) for s in zoom_out_side_range), p=zoom_out_p),
            RandomIoUCrop(p=iou_crop_p),
            T.SanitizeBoundingBoxes(min_size=min_box_size),
        ]
    ops += [
        T.RandomHorizontalFlip(p=flip_p),
        T.Resize(to_hw(image_size), antialias=True),
        T.SanitizeBoundingBoxes(min_size=min_box_size),
    ]
    return T.Compose(ops)


def build_test_transforms(image_size: Optional[Union[int, Sequence[int]]]) -> T.Compose:
    """Resize to the eval size ``(h, w)``; ``None`` keeps the image size."""
    if image_size is None:
        return T.Compose([T.Identity()])
    return T.Compose([T.Resize(to_hw(image_size), antialias=True)])
