"""Contrastive denoising (CDN) query groups for RT-DETR training.

Every ground-truth box is repeated in ``num_group`` groups, each holding a positive copy (small
box noise, should reconstruct the GT) and a negative copy (large box noise, should predict
"no object"). Labels are randomly flipped with probability ``label_noise_ratio / 2``.

The global RNG is consumed in exactly four draws, in the official order: label-flip mask,
replacement labels, box-noise signs, box-noise magnitudes (so training with a fixed seed
reproduces the official denoising queries bit for bit).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torchvision.ops import box_convert

__all__ = ["get_contrastive_denoising_training_group", "build_denoising_attn_mask", "inverse_sigmoid"]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Logit of ``x`` clipped to [0, 1], with ``eps`` guarding both ends."""
    x = x.clip(min=0.0, max=1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))


def build_denoising_attn_mask(num_denoising: int, num_queries: int, group_size: int, device=None) -> torch.Tensor:
    """Self-attention mask for [denoising queries | matching queries].

    True means "may not attend". Matching queries cannot see any denoising query, and a
    denoising query only sees its own group (``group_size`` consecutive queries) and the
    matching queries.

    Returns:
        (num_denoising + num_queries, num_denoising + num_queries) bool.
    """
    size = num_denoising + num_queries
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[num_denoising:, :num_denoising] = True
    group = torch.arange(num_denoising, device=device) // group_size
    mask[:num_denoising, :num_denoising] = group[:, None] != group[None, :]
    return mask


def get_contrastive_denoising_training_group(
    targets: List[Dict[str, torch.Tensor]],
    num_classes: int,
    num_queries: int,
    class_embed: nn.Embedding,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
    device: Optional[torch.device] = None,
    abs_box_size: bool = False,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor], Optional[dict]]:
    """Build the denoising queries.

    Args:
        targets: per image {"labels": (N_i,) int64, "boxes": (N_i, 4) normalized cxcywh}.
        num_classes: K; label K is the padding class (zero embedding row).
        num_queries: number of matching queries that follow the denoising ones.
        class_embed: (K+1, C) embedding turning labels into query contents.
        num_denoising: target total of denoising queries (split into groups).
        abs_box_size: DEIM / D-FINE: a noised box whose corners crossed (negative width or height
            after clipping) keeps its size's absolute value (RT-DETR keeps the negative size).

    Returns:
        contents (B, D, C), ref_points_unact (B, D, 4), attn_mask (D+Q, D+Q) bool, dn_meta
        with "dn_positive_idx" (per image, indices of positive queries), "dn_num_group",
        "dn_num_split" [D, Q]. All None when ``num_denoising <= 0``.

    A batch without any ground truth still gets one dummy (never positive) group, so the
    denoising embedding stays in the graph on every process (DDP) and contributes zero loss.
    """
    if num_denoising <= 0:
        return None, None, None, None
    num_gts = [len(t["labels"]) for t in targets]
    if device is None:
        device = targets[0]["labels"].device
    bs = len(num_gts)
    max_gt = max(num_gts) if num_gts else 0
    empty_batch = max_gt == 0
    if empty_batch:
        max_gt, num_group = 1, 1
    else:
        num_group = max(num_denoising // max_gt, 1)

    query_class = torch.full([bs, max_gt], num_classes, dtype=torch.int32, device=device)
    query_bbox = torch.zeros([bs, max_gt, 4], device=device)
    pad_gt_mask = torch.zeros([bs, max_gt], dtype=torch.bool, device=device)
    if empty_batch:
        query_bbox[..., :2] = 0.5
        query_bbox[..., 2:] = 0.1
    for i, (t, n) in enumerate(zip(targets, num_gts)):
        if n > 0:
            query_class[i, :n] = t["labels"]
            query_bbox[i, :n] = t["boxes"]
            pad_gt_mask[i, :n] = True

    # layout per image: group g occupies [2*max_gt*g, 2*max_gt*(g+1)): positives then negatives
    query_class = query_class.tile([1, 2 * num_group])
    query_bbox = query_bbox.tile([1, 2 * num_group, 1])
    pad_gt_mask = pad_gt_mask.tile([1, 2 * num_group])
    negative_mask = torch.zeros([bs, max_gt * 2, 1], device=device)
    negative_mask[:, max_gt:] = 1
    negative_mask = negative_mask.tile([1, num_group, 1])
    positive_mask = (1 - negative_mask).squeeze(-1) * pad_gt_mask
    dn_positive_idx = torch.nonzero(positive_mask)[:, 1]
    dn_positive_idx = torch.split(dn_positive_idx, [n * num_group for n in num_gts])
    total_dn = int(max_gt * 2 * num_group)

    if label_noise_ratio > 0:
        flip = torch.rand_like(query_class, dtype=torch.float) < (label_noise_ratio * 0.5)
        new_label = torch.randint_like(flip, 0, num_classes, dtype=query_class.dtype)
        query_class = torch.where(flip & pad_gt_mask, new_label, query_class)

    if box_noise_scale > 0:
        known_xyxy = box_convert(query_bbox, in_fmt="cxcywh", out_fmt="xyxy")
        diff = torch.tile(query_bbox[..., 2:] * 0.5, [1, 1, 2]) * box_noise_scale
        rand_sign = torch.randint_like(query_bbox, 0, 2) * 2.0 - 1.0
        rand_part = torch.rand_like(query_bbox)
        rand_part = (rand_part + 1.0) * negative_mask + rand_part * (1 - negative_mask)
        known_xyxy = torch.clip(known_xyxy + rand_sign * rand_part * diff, min=0.0, max=1.0)
        query_bbox = box_convert(known_xyxy, in_fmt="xyxy", out_fmt="cxcywh")
        if abs_box_size:
            query_bbox = query_bbox.abs()
    ref_points_unact = inverse_sigmoid(query_bbox)

    contents = class_embed(query_class)
    attn_mask = build_denoising_attn_mask(total_dn, num_queries, 2 * max_gt, device=device)
    dn_meta = {
        "dn_positive_idx": dn_positive_idx,
        "dn_num_group": num_group,
        "dn_num_split": [total_dn, num_queries],
    }
    return contents, ref_points_unact, attn_mask, dn_meta
