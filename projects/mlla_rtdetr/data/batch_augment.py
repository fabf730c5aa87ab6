"""Batch-level augmentation of DEIM's "Dense O2O" recipe: MixUp and multi-scale in the collate.

Official DEIM (``BatchImageCollateFunction``) works on the stacked float batch ``x = uint8 / 255``
(B, 3, H, W), in this order:

1. MixUp, with probability ``mixup_prob`` (``random.random() < p``) in epochs
   ``[mixup_epochs[0], mixup_epochs[1])``: ``beta = round(random.uniform(0.45, 0.55), 6)``, each
   image becomes ``roll(x, 1)[i] * (1 - beta) + x[i] * beta`` (image ``i`` with image ``i - 1``,
   the first with the last), and gets the boxes and labels of both (its own first); the per-box
   weights (``beta`` for its own boxes, ``1 - beta`` for the others) are kept.
2. Multi-scale, before ``multiscale_stop_epoch``: one square size ``random.choice(sizes)`` for the
   batch, nearest-neighbour ``F.interpolate`` of the whole batch (boxes scale with it).

Both use Python's ``random`` only; the train loader seeds it per batch (``TrainLoader``).
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

__all__ = ["DenseO2OBatchAugment"]


class DenseO2OBatchAugment:
    """MixUp + multi-scale of a batch of mapped samples (module docstring).

    Args:
        mixup_prob: probability of MixUp for a batch (official 0.5).
        mixup_epochs: ``[start, stop)`` epochs of MixUp (official r18: ``[4, 64]``).
        multiscale_sizes: square sizes drawn per batch (``multiscale_sizes(640, 480, 800, 32, 3)``
            is the official list); ``None`` disables multi-scale.
        multiscale_stop_epoch: no multi-scale from this epoch on (official r18: 117).

    Called by the loader as ``augment(samples, epoch)`` on the mapper outputs (``image`` (3, H, W)
    uint8 of one size, ``instances`` in its pixels); returns new samples. An image that MixUp
    touched is float32 on the 0..255 scale (``255 * x`` of the official float image; the model
    divides by 255 again: within one float32 rounding of the official input); others stay uint8.
    Mixed samples carry ``instances.gt_mixup_weights`` (N,) float32.
    """

    def __init__(
        self,
        mixup_prob: float = 0.5,
        mixup_epochs: Sequence[int] = (4, 64),
        multiscale_sizes: Optional[Sequence[int]] = None,
        multiscale_stop_epoch: Optional[int] = None,
    ):
        if not 0.0 <= float(mixup_prob) <= 1.0:
            raise ValueError(f"mixup_prob must be in [0, 1], got {mixup_prob}")
        if len(mixup_epochs) != 2:
            raise ValueError(f"mixup_epochs must be [start, stop), got {list(mixup_epochs)}")
        self.mixup_prob = float(mixup_prob)
        self.mixup_epochs = (int(mixup_epochs[0]), int(mixup_epochs[1]))
        self.multiscale_sizes = None if multiscale_sizes is None else [int(s) for s in multiscale_sizes]
        if self.multiscale_sizes is not None and not self.multiscale_sizes:
            raise ValueError("multiscale_sizes is empty; set it to None to disable multi-scale.")
        self.multiscale_stop_epoch = None if multiscale_stop_epoch is None else int(multiscale_stop_epoch)

    def apply(
        self, images: torch.Tensor, targets: List[Dict[str, torch.Tensor]], epoch: int
    ) -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]], Optional[int]]:
        """The official batch operations on ``images`` (B, 3, H, W), float in [0, 1] or uint8,
        and ``targets`` (dicts with ``boxes`` (N, 4) in any format and ``labels`` (N,)).

        Returns ``(images, targets, size)``: MixUp turns uint8 images into the official float
        ``x / 255`` first and adds ``mixup`` (N,) weights to every target; without MixUp uint8
        stays uint8 (nearest-neighbour resizing picks the same pixels in either dtype). ``size`` is
        the multi-scale size drawn (``None``: not resized). Boxes are only concatenated: the caller
        rescales pixel boxes to ``size``.
        """
        if random.random() < self.mixup_prob and self.mixup_epochs[0] <= epoch < self.mixup_epochs[1]:
            beta = round(random.uniform(0.45, 0.55), 6)
            if images.dtype == torch.uint8:
                images = images.float() / 255.0  # official ConvertPILImage
            images = images.roll(shifts=1, dims=0).mul_(1.0 - beta).add_(images.mul(beta))
            mixed = []
            for i, own in enumerate(targets):
                other = targets[i - 1]
                t = dict(own)
                for key in ("boxes", "labels"):
                    t[key] = torch.cat([own[key], other[key]])
                t["mixup"] = torch.tensor([beta] * len(own["labels"]) + [1.0 - beta] * len(other["labels"]),
                                          dtype=torch.float32)
                mixed.append(t)
            targets = mixed
        size = None
        if self.multiscale_sizes is not None and (self.multiscale_stop_epoch is None or epoch < self.multiscale_stop_epoch):
            size = random.choice(self.multiscale_sizes)
            images = F.interpolate(images, size=size)  # nearest, as official
        return images, targets, size

    def __call__(self, samples: List[Dict[str, Any]], epoch: int) -> List[Dict[str, Any]]:
        shapes = {tuple(s["image"].shape) for s in samples}
        if len(shapes) != 1:
            raise ValueError(f"DenseO2OBatchAugment needs images of one size (the mapper's fixed Resize), got {shapes}")
        images = torch.stack([s["image"] for s in samples])
        targets = [{"boxes": s["instances"].gt_boxes.tensor, "labels": s["instances"].gt_classes} for s in samples]
        images, targets, size = self.apply(images, targets, epoch)
        mixed = "mixup" in targets[0]
        h, w = samples[0]["image"].shape[-2:]
        out = []
        for s, img, t in zip(samples, images, targets):
            boxes = t["boxes"]
            if size is not None:
                boxes = boxes * torch.tensor([size / w, size / h, size / w, size / h], dtype=boxes.dtype)
            inst = Instances(tuple(img.shape[-2:]))
            inst.gt_boxes = Boxes(boxes)
            inst.gt_classes = t["labels"]
            if mixed:
                inst.gt_mixup_weights = t["mixup"]
                img = img * 255.0
            out.append(dict(s, image=img.contiguous(), instances=inst))
        return out

    def __repr__(self) -> str:
        return (f"DenseO2OBatchAugment(mixup_prob={self.mixup_prob}, mixup_epochs={list(self.mixup_epochs)}, "
                f"multiscale_sizes={self.multiscale_sizes}, multiscale_stop_epoch={self.multiscale_stop_epoch})")
