"""Fine-grained Distribution Refinement (FDR, D-FINE): box edges as distributions over bins.

Each of the four edges of a box is predicted as logits over ``reg_max + 1`` bins. The bin values
come from the non-uniform weighting function W(n) (:func:`weighting_function`): 0 in the middle
bin, growing geometrically towards both ends, ``±up * reg_scale`` at the second-to-last bins and
``±2 * up * reg_scale`` at the last ones, so most bins resolve small corrections. The expected
value of an edge distribution (:func:`distribution_to_distance`) is a distance from the reference
box, in units of ``box size / reg_scale`` measured from its half-size (:func:`distance_to_box`).

:func:`box_to_distance` is the inverse used for the FGL targets: it maps a target edge to the two
bins around it and their linear interpolation weights.

Formulas and conventions follow the official D-FINE code (as in ShihuaHuang95/DEIM @ a9aa4ad),
op for op, so the float rounding is the same.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

__all__ = ["weighting_function", "distribution_to_distance", "distance_to_box", "box_to_distance"]


def weighting_function(reg_max: int, up: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Bin values W(0..reg_max) -> (reg_max + 1,).

    Args:
        reg_max: number of bins minus one (even, >= 4).
        up: (1,) tensor, the relative maximum offset (0.5 in D-FINE).
        reg_scale: (1,) tensor, the curvature: larger values flatten W near the middle bin.
    """
    bound = up[0].abs() * reg_scale.abs()
    outer = bound * 2
    step = (bound + 1) ** (2 / (reg_max - 2))
    half = reg_max // 2
    left = [-(step**i) + 1 for i in range(half - 1, 0, -1)]
    right = [step**i - 1 for i in range(1, half)]
    return torch.cat([-outer] + left + [torch.zeros_like(up[0][None])] + right + [outer], 0)


def distribution_to_distance(corners: torch.Tensor, project: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Expected edge distances of bin logits. corners (..., 4 * (reg_max + 1)) -> (..., 4)."""
    shape = corners.shape
    prob = F.softmax(corners.reshape(-1, reg_max + 1), dim=1)
    return F.linear(prob, project.to(prob.device)).reshape(-1, 4).reshape(list(shape[:-1]) + [-1])


def distance_to_box(points: torch.Tensor, distance: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Boxes from reference boxes and edge distances.

    Args:
        points: (..., 4) reference boxes, normalized cxcywh.
        distance: (..., 4) left, top, right, bottom distances (see the module docstring).
        reg_scale: (1,) tensor.

    Returns:
        (..., 4) normalized cxcywh.
    """
    reg_scale = abs(reg_scale)
    x1 = points[..., 0] - (0.5 * reg_scale + distance[..., 0]) * (points[..., 2] / reg_scale)
    y1 = points[..., 1] - (0.5 * reg_scale + distance[..., 1]) * (points[..., 3] / reg_scale)
    x2 = points[..., 0] + (0.5 * reg_scale + distance[..., 2]) * (points[..., 2] / reg_scale)
    y2 = points[..., 1] + (0.5 * reg_scale + distance[..., 3]) * (points[..., 3] / reg_scale)
    return box_convert(torch.stack([x1, y1, x2, y2], -1), "xyxy", "cxcywh")


def _bins_around(values: torch.Tensor, reg_max: int, up: torch.Tensor, reg_scale: torch.Tensor):
    """Left bin index (float) of every value and the interpolation weights of the two bins around
    it; values outside W's range go entirely to the first / last bin."""
    values = values.reshape(-1)
    w = weighting_function(reg_max, up, reg_scale)
    left_index = ((w.unsqueeze(0) - values.unsqueeze(1)) <= 0).sum(dim=1) - 1
    index = left_index.to(values.dtype)
    weight_right = torch.zeros_like(index)
    weight_left = torch.zeros_like(index)

    inside = (index >= 0) & (index < reg_max)
    bins = index[inside].long()
    left_gap = torch.abs(values[inside] - w[bins])
    right_gap = torch.abs(w[bins + 1] - values[inside])
    weight_right[inside] = left_gap / (left_gap + right_gap)
    weight_left[inside] = 1.0 - weight_right[inside]

    below = index < 0
    weight_right[below] = 0.0
    weight_left[below] = 1.0
    index[below] = 0.0
    above = index >= reg_max
    weight_right[above] = 1.0
    weight_left[above] = 0.0
    index[above] = reg_max - 0.1
    return index, weight_right, weight_left


def box_to_distance(
    points: torch.Tensor, boxes_xyxy: torch.Tensor, reg_max: int, reg_scale: torch.Tensor, up: torch.Tensor,
    eps: float = 0.1,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FGL targets: target boxes as bin positions relative to reference boxes.

    Args:
        points: (N, 4) reference boxes, normalized cxcywh.
        boxes_xyxy: (N, 4) target boxes, normalized xyxy.

    Returns:
        (N * 4,) float left-bin positions clamped to [0, reg_max - eps], and (N * 4,) right / left
        bin weights, all detached.
    """
    reg_scale = abs(reg_scale)
    sx = points[..., 2] / reg_scale + 1e-16
    sy = points[..., 3] / reg_scale + 1e-16
    left = (points[:, 0] - boxes_xyxy[:, 0]) / sx - 0.5 * reg_scale
    top = (points[:, 1] - boxes_xyxy[:, 1]) / sy - 0.5 * reg_scale
    right = (boxes_xyxy[:, 2] - points[:, 0]) / sx - 0.5 * reg_scale
    bottom = (boxes_xyxy[:, 3] - points[:, 1]) / sy - 0.5 * reg_scale
    index, weight_right, weight_left = _bins_around(torch.stack([left, top, right, bottom], -1), reg_max, up, reg_scale)
    index = index.clamp(min=0, max=reg_max - eps)
    return index.reshape(-1).detach(), weight_right.detach(), weight_left.detach()
