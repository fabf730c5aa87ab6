"""Hungarian matcher between predictions and ground truth (DETR / RT-DETR)."""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """One-to-one assignment minimising ``cost_class*C_cls + cost_bbox*L1 + cost_giou*(-GIoU)``.

    With ``use_focal_loss`` the class cost is the focal-loss difference
    ``alpha*(1-p)^gamma*(-log p) - (1-alpha)*p^gamma*(-log(1-p))`` of the sigmoid probability
    of the target class; otherwise it is ``-softmax(p)[target]``.

    Args:
        cost_class, cost_bbox, cost_giou: weights of the three costs (not all zero).
        alpha, gamma: focal parameters for the class cost.
        use_focal_loss: sigmoid/focal class cost (RT-DETR) instead of softmax.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
        use_focal_loss: bool = True,
    ):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0.")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.alpha = alpha
        self.gamma = gamma
        self.use_focal_loss = use_focal_loss

    def cost_matrix(
        self, logits: torch.Tensor, boxes: torch.Tensor, tgt_labels: torch.Tensor, tgt_boxes: torch.Tensor
    ) -> torch.Tensor:
        """Cost for one image. logits (Q, K), boxes (Q, 4) cxcywh; targets (T,), (T, 4) -> (Q, T)."""
        if self.use_focal_loss:
            prob = torch.sigmoid(logits)[:, tgt_labels]
            neg = (1 - self.alpha) * (prob**self.gamma) * (-(1 - prob + 1e-8).log())
            pos = self.alpha * ((1 - prob) ** self.gamma) * (-(prob + 1e-8).log())
            cost_class = pos - neg
        else:
            cost_class = -logits.softmax(-1)[:, tgt_labels]
        cost_bbox = torch.cdist(boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy"))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: {"pred_logits": (B, Q, K), "pred_boxes": (B, Q, 4) normalized cxcywh}.
            targets: per image {"labels": (T_i,) int64, "boxes": (T_i, 4) normalized cxcywh}.

        Returns:
            per image (query_idx, target_idx), int64 on CPU, each of length min(Q, T_i).
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        indices = []
        for i, t in enumerate(targets):
            if len(t["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            # at least float32 (half-precision costs would tie); float64 stays float64
            dtype = torch.promote_types(logits.dtype, torch.float32)
            cost = self.cost_matrix(logits[i].to(dtype), boxes[i].to(dtype), t["labels"], t["boxes"].to(dtype))
            if not torch.isfinite(cost).all():
                # FloatingPointError: the trainer reports it like a NaN loss (iteration named).
                raise FloatingPointError(
                    "HungarianMatcher: non-finite matching cost (NaN/inf predictions or degenerate target "
                    "boxes with zero area)."
                )
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
