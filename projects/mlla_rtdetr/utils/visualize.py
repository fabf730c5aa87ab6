"""Drawing boxes with labels on images: the one box drawer of the project (:func:`draw_boxes`)
and its two uses, detections coloured by class (:func:`draw_detections`) and ground truth vs
predictions (:func:`~mlla_rtdetr.utils.plots.draw_gt_and_predictions`)."""
from __future__ import annotations

import colorsys
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["class_color", "class_name", "detection_labels", "draw_boxes", "draw_detections"]

RGB = Tuple[int, int, int]


def class_color(class_id: int) -> RGB:
    """A distinct, deterministic RGB color per class (golden-ratio hue steps)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def class_name(class_id: int, class_names: Optional[Sequence[str]] = None) -> str:
    """``class_names[class_id]``, or the id as text without names (or out of their range)."""
    c = int(class_id)
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)


def detection_labels(classes: Sequence[int], scores: Sequence[float],
                     class_names: Optional[Sequence[str]] = None) -> List[str]:
    """Label strings like ``"circle 0.87"`` (or ``"3 0.87"`` without class names)."""
    return [f"{class_name(c, class_names)} {float(s):.2f}" for c, s in zip(classes, scores)]


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")


def draw_boxes(
    image: np.ndarray,
    boxes: Union[torch.Tensor, np.ndarray, Sequence[Sequence[float]]],
    labels: Optional[Sequence[Optional[str]]] = None,
    colors: Union[RGB, Sequence[RGB]] = (255, 255, 255),
    *,
    width: int = 2,
    scale: float = 1.0,
    font_size: int = 11,
    label_below: Union[bool, Sequence[bool]] = False,
    text_color: RGB = (0, 0, 0),
) -> np.ndarray:
    """Boxes and their labels on a copy of ``image`` (enlarged by ``scale`` first).

    A label sits on a filled rectangle of its box's colour, above the box (below with
    ``label_below``), or inside the box where the image edge leaves no room.

    Args:
        image: (H, W, 3) uint8 RGB (not modified).
        boxes: (N, 4) absolute XYXY pixels of ``image``; clipped to it.
        labels: N strings (None or "" for no label), or None for no labels at all.
        colors: one RGB colour for every box, or N colours.
        label_below: one flag for every box, or N flags.
    Returns:
        (round(H*scale), round(W*scale), 3) uint8 RGB.
    """
    from PIL import Image, ImageDraw, ImageFont

    _check_image(image)
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().float().cpu().numpy()
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale
    n = len(boxes)
    h, w = image.shape[:2]
    H, W = int(round(h * scale)), int(round(w * scale))
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, W - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, H - 1)
    colors = [tuple(colors)] * n if len(colors) == 3 and isinstance(colors[0], (int, np.integer)) else list(colors)
    below = [label_below] * n if isinstance(label_below, bool) else list(label_below)
    labels = [None] * n if labels is None else list(labels)
    if not len(colors) == len(below) == len(labels) == n:
        raise ValueError(f"{n} boxes need as many labels, colours and label_below flags, got "
                         f"{len(labels)}, {len(colors)} and {len(below)}.")

    canvas = Image.fromarray(np.ascontiguousarray(image))
    if (H, W) != (h, w):
        canvas = canvas.resize((W, H), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    for (x0, y0, x1, y1), label, color, under in zip(boxes.tolist(), labels, colors, below):
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        if not label:
            continue
        l, t, r, b = draw.textbbox((0, 0), label, font=font)
        tw, th = r - l + 4, b - t + 4
        ty = y1 if under else y0 - th
        if ty < 0 or ty + th > H:  # no room outside the box: put the label inside
            ty = y1 - th if under else y0
        tx = min(max(x0, 0), max(W - tw, 0))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        draw.text((tx + 2 - l, ty + 2 - t), label, fill=text_color, font=font)
    return np.asarray(canvas).copy()


def draw_detections(image: np.ndarray, boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                    class_names: Optional[Sequence[str]] = None, score_threshold: float = 0.0,
                    width: int = 2) -> np.ndarray:
    """Draw the detections with ``score >= score_threshold`` on a copy of ``image``, coloured by
    class (:func:`class_color`) and labelled "name score".

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: (N, 4) absolute XYXY pixels of ``image``; scores (N,); classes (N,) contiguous ids.
    Returns:
        (H, W, 3) uint8 RGB with boxes and "name score" labels.
    """
    _check_image(image)
    keep = (scores >= score_threshold).cpu()
    boxes, scores, classes = boxes.detach().cpu()[keep], scores.detach().cpu()[keep], classes.cpu()[keep]
    return draw_boxes(image, boxes, detection_labels(classes.tolist(), scores.tolist(), class_names),
                      [class_color(int(c)) for c in classes], width=width)
