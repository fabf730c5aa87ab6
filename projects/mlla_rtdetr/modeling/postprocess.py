"""RT-DETR post-processing: top-K (query, class) pairs and boxes in pixels."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert

__all__ = ["RTDETRPostProcessor"]


class RTDETRPostProcessor(nn.Module):
    """Select the ``num_top_queries`` highest sigmoid scores over all queries x classes.

    Args:
        num_classes: K.
        num_top_queries: detections kept per image.
        use_focal_loss: sigmoid scores (RT-DETR); otherwise softmax with a trailing background class.
    """

    def __init__(self, num_classes: int = 80, num_top_queries: int = 300, use_focal_loss: bool = True):
        super().__init__()
        self.num_classes = int(num_classes)
        self.num_top_queries = int(num_top_queries)
        self.use_focal_loss = use_focal_loss

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_top_queries={self.num_top_queries}"

    def forward(
        self, outputs: Dict[str, torch.Tensor], target_sizes: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            outputs: {"pred_logits": (B, Q, K), "pred_boxes": (B, Q, 4) normalized cxcywh}.
            target_sizes: (B, 2) as (width, height) of the frame the boxes are scaled to.

        Returns:
            scores (B, k), labels (B, k) int64 in 0..K-1, boxes (B, k, 4) XYXY pixels,
            query_index (B, k) int64, sorted by descending score.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if logits.shape[-1] != self.num_classes and self.use_focal_loss:
            raise ValueError(f"pred_logits has {logits.shape[-1]} classes, post-processor expects {self.num_classes}.")
        boxes = box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")
        boxes = boxes * target_sizes.to(boxes.dtype).repeat(1, 2).unsqueeze(1)
        if self.use_focal_loss:
            k = min(self.num_top_queries, logits.shape[1] * logits.shape[2])
            scores, index = torch.topk(torch.sigmoid(logits).flatten(1), k, dim=-1)
            labels = index % self.num_classes
            query_index = index // self.num_classes
        else:
            probs = F.softmax(logits, dim=-1)[..., :-1]
            scores, labels = probs.max(-1)
            k = min(self.num_top_queries, scores.shape[1])
            scores, query_index = torch.topk(scores, k, dim=-1)
            labels = labels.gather(1, query_index)
        boxes = boxes.gather(1, query_index.unsqueeze(-1).expand(-1, -1, 4))
        return scores, labels, boxes, query_index
