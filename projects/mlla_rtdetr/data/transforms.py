"""RT-DETR training / test transforms on torchvision.transforms.v2.

A sample is a dict ``{"image": tv_tensors.Image (3, H, W) uint8, "boxes":
tv_tensors.BoundingBoxes (N, 4) XYXY absolute, "labels": int64 (N,)}``; every op keeps the
three consistent (v2 transforms dispatch on the tv_tensor types).

Train pipeline (official RT-DETR v2 order)::

    RandomPhotometricDistort(p) -> RandomZoomOut(fill) -> RandomIoUCrop(p)
    -> SanitizeBoundingBoxes(min_size) -> RandomHorizontalFlip -> Resize(size)
    -> SanitizeBoundingBoxes(min_size)

The first four are the "strong" ops that the stop-augmentation epoch switches off.

DEIM's "Dense O2O" samples (:class:`Mosaic`) replace ZoomOut and IoUCrop by a Mosaic of four
images; the per-epoch choice between the pipelines is the mapper's
(:class:`~mlla_rtdetr.data.mapper.DenseO2ODatasetMapper`), MixUp and DEIM's multi-scale are batch
operations (:mod:`mlla_rtdetr.data.batch_augment`).
"""
from __future__ import annotations

import random
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2 as T
from torchvision.transforms.v2._utils import query_chw, query_size

__all__ = [
    "Mosaic",
    "RandomAffine",
    "RandomIoUCrop",
    "RandomPhotometricDistort",
    "uniform_float32",
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
    base: int = 640, min_size: int = 480, max_size: int = 800, step: int = 32, base_repeat: int = 3,
    upper_descending: bool = False,
) -> List[int]:
    """Batch-level training sizes of official RT-DETR: ``min_size..max_size`` by ``step`` with
    ``base`` occurring ``base_repeat`` times, e.g. ``[480, 512, ..., 608, 640, 640, 640, 672, ..., 800]``.

    ``upper_descending=True`` lists the sizes above ``base`` from the largest down, the order of
    official DEIM / D-FINE (``[480, ..., 640, 640, 640, 800, 768, ..., 672]``): a seeded
    ``random.choice`` picks the same size only with the same order.
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
    upper = sizes[i + 1 :]
    return sizes[:i] + [base] * max(1, base_repeat) + (upper[::-1] if upper_descending else upper)


def _round_to_float32(x: Fraction) -> float:
    """The float32 nearest to the exact rational ``x`` (ties to even), as a Python float."""
    guess = np.float32(float(x))
    candidates = (np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf)))
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - x), int(np.float32(c).view(np.uint32)) & 1))
    return float(best)


def uniform_float32(low: float, high: float) -> float:
    """``torch.empty(1).uniform_(low, high).item()`` as x86 builds with FMA compute it (AVX2 /
    AVX-512 kernels: ``fma(u, high - low, low)`` in float32), on every CPU.

    torchvision draws its random parameters that way, and PyTorch's kernel without FMA (the
    ``default`` CPU capability) rounds ``u * (high - low)`` first: about 30 % of the draws then
    differ by one ulp, which moves affine-warped / colour-jittered pixels. This takes the same
    single draw ``u`` of torch's generator (``uniform_(0, 1)`` is ``u`` exactly on every kernel)
    and rounds the exact ``u * (high - low) + low`` once.
    """
    u = torch.empty(1).uniform_(0.0, 1.0).item()
    low32, high32 = np.float32(low), np.float32(high)
    span = np.float32(high32 - low32)
    return _round_to_float32(Fraction(u) * Fraction(float(span)) + Fraction(float(low32)))


class RandomPhotometricDistort(T.RandomPhotometricDistort):
    """``torchvision.transforms.v2.RandomPhotometricDistort`` with its factors drawn by
    :func:`uniform_float32` (the same draws, the same values on every CPU)."""

    def make_params(self, flat_inputs: List[Any]) -> Dict[str, Any]:
        num_channels, *_ = query_chw(flat_inputs)
        params: Dict[str, Any] = {}
        for key, (low, high) in (("brightness_factor", self.brightness), ("contrast_factor", self.contrast),
                                 ("saturation_factor", self.saturation), ("hue_factor", self.hue)):
            params[key] = uniform_float32(low, high) if torch.rand(1) < self.p else None
        params["contrast_before"] = bool(torch.rand(()) < 0.5)
        params["channel_permutation"] = torch.randperm(num_channels) if torch.rand(1) < self.p else None
        return params


class RandomAffine(T.RandomAffine):
    """``torchvision.transforms.v2.RandomAffine`` with its parameters drawn by
    :func:`uniform_float32` (the same draws, the same values on every CPU)."""

    def make_params(self, flat_inputs: List[Any]) -> Dict[str, Any]:
        height, width = query_size(flat_inputs)
        angle = uniform_float32(self.degrees[0], self.degrees[1])
        translate = (0, 0)
        if self.translate is not None:
            max_dx, max_dy = float(self.translate[0] * width), float(self.translate[1] * height)
            translate = (int(round(uniform_float32(-max_dx, max_dx))), int(round(uniform_float32(-max_dy, max_dy))))
        scale = uniform_float32(self.scale[0], self.scale[1]) if self.scale is not None else 1.0
        shear = [0.0, 0.0]
        if self.shear is not None:
            shear[0] = uniform_float32(self.shear[0], self.shear[1])
            if len(self.shear) == 4:
                shear[1] = uniform_float32(self.shear[2], self.shear[3])
        return dict(angle=angle, translate=translate, scale=scale, shear=tuple(shear))


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


class Mosaic(T.Transform):
    """DEIM's Mosaic: the sample and three images drawn from a dataset, each resized to a short
    side of ``output_size``, pasted as the four quadrants of a ``2H x 2W`` canvas (``H``, ``W`` the
    largest resized height / width; quadrant origins ``(0, 0)``, ``(W, 0)``, ``(0, H)``, ``(W, H)``,
    the rest filled with 0), followed by a random affine (rotation, translation, scale; nearest
    neighbour, ``fill``).

    The three partners are ``random.choices(range(len(source)), k=3)`` (Python's ``random``, as
    official DEIM); the affine parameters come from torch's generator. ``source[i]`` returns a
    sample dict ``{"image": PIL, "boxes": BoundingBoxes XYXY, "labels": (N,) int64}`` before
    augmentation; it is set by the mapper that owns the transform (``source=None`` raises).

    Input / output: a sample dict as above (PIL image); boxes follow the pixels.
    """

    def __init__(
        self,
        output_size: int = 320,
        max_size: Optional[int] = None,
        rotation: float = 10.0,
        translate: Sequence[float] = (0.1, 0.1),
        scale: Sequence[float] = (0.5, 1.5),
        fill: float = 0,
        source: Optional[Sequence[Dict[str, Any]]] = None,
    ):
        super().__init__()
        self.resize = T.Resize(int(output_size), max_size=max_size, antialias=True)
        self.affine = RandomAffine(
            degrees=float(rotation), translate=tuple(float(t) for t in translate),
            scale=tuple(float(s) for s in scale), fill=fill,
        )
        self.source = source

    def forward(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        if self.source is None:
            raise RuntimeError("Mosaic has no source of partner images: its mapper must be bound to the "
                               "dataset (TrainLoader does this).")
        partners = random.choices(range(len(self.source)), k=3)
        parts = [self.resize(sample)] + [self.resize(self.source[i]) for i in partners]
        height = max(p["image"].height for p in parts)
        width = max(p["image"].width for p in parts)
        canvas = Image.new(parts[0]["image"].mode, (2 * width, 2 * height), color=0)
        boxes, labels = [], []
        for p, (ox, oy) in zip(parts, ((0, 0), (width, 0), (0, height), (width, height))):
            canvas.paste(p["image"], (ox, oy))
            boxes.append(p["boxes"].as_subclass(torch.Tensor) + torch.tensor([ox, oy, ox, oy]))
            labels.append(p["labels"])
        out = dict(sample)
        out["image"] = canvas
        out["boxes"] = tv_tensors.BoundingBoxes(torch.cat(boxes), format="XYXY", canvas_size=(2 * height, 2 * width))
        out["labels"] = torch.cat(labels)
        return self.affine(out)


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
    mosaic: Optional[Mosaic] = None,
) -> T.Compose:
    """The RT-DETR train pipeline resizing to ``image_size`` (h, w).

    ``strong=False`` is the post stop-augmentation-epoch pipeline: flip + resize + sanitize only.
    With a ``mosaic`` (and ``strong``) the pipeline is DEIM's Mosaic sample: Mosaic first, and no
    ZoomOut / IoUCrop (official DEIM never combines them in one sample).
    """
    ops: List[Any] = []
    if strong and mosaic is not None:
        ops += [mosaic, RandomPhotometricDistort(p=photometric_p), T.SanitizeBoundingBoxes(min_size=min_box_size)]
    elif strong:
        ops += [
            RandomPhotometricDistort(p=photometric_p),
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
