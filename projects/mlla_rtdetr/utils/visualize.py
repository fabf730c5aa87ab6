"""Drawing detections (boxes, class names, scores) on images."""
from __future__ import annotations

import colorsys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch


def class_color(class_id: int) -> Tuple[int, int, int]:
    """A distinct, deterministic RGB color per class (golden-ratio hue steps)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def detection_labels(classes: Sequence[int], scores: Sequence[float],
                     class_names: Optional[Sequence[str]] = None) -> List[str]:
    """Label strings like ``"circle 0.87"`` (or ``"3 0.87"`` without class names)."""
    out = []
    for c, s in zip(classes, scores):
        c = int(c)
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        out.append(f"{name} {float(s):.2f}")
    return out


def draw_detections(image: np.ndarray, boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                    class_names: Optional[Sequence[str]] = None, score_threshold: float = 0.0,
                    width: int = 2) -> np.ndarray:
    """Draw the detections with ``score >= score_threshold`` on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: (N, 4) absolute XYXY pixels of ``image``; scores (N,); classes (N,) contiguous ids.
    Returns:
        (H, W, 3) uint8 RGB with boxes and "name score" labels.
    """
    from torchvision.utils import draw_bounding_boxes

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    keep = scores >= score_threshold
    boxes, scores, classes = boxes[keep].float().cpu(), scores[keep].cpu(), classes[keep].cpu()
    if len(boxes) == 0:
        return image.copy()
    h, w = image.shape[:2]
    boxes = boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h - 1)
    canvas = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    drawn = draw_bounding_boxes(
        canvas, boxes, labels=detection_labels(classes.tolist(), scores.tolist(), class_names),
        colors=[class_color(int(c)) for c in classes], width=width,
    )
    return drawn.permute(1, 2, 0).contiguous().numpy()
