"""RT-DETR set criterion: varifocal / focal classification, L1 and GIoU box losses.

Losses are computed for the final decoder output, every auxiliary decoder layer
(``_aux_{i}``), the denoising queries of every layer (``_dn_{i}``, matched by construction) and
the encoder top-k proposals (``_enc_{i}``); each is multiplied by its ``weight_dict`` entry.
Key names are the RT-DETRv2 ones for both versions.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import nn
from torchvision.ops import box_convert, sigmoid_focal_loss

__all__ = ["RTDETRCriterion", "paired_box_iou", "paired_generalized_box_iou", "varifocal_loss"]


def _paired_iou_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    return inter / union, union


def paired_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of corresponding rows of two (N, 4) XYXY box sets -> (N,)."""
    return _paired_iou_union(boxes1, boxes2)[0]


def paired_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU of corresponding rows of two (N, 4) XYXY box sets -> (N,).

    No epsilon (unlike ``torchvision.ops.generalized_box_iou_loss``): the values, and their
    gradients, are the diagonal of the official pairwise ``generalized_box_iou`` bit for bit.
    """
    iou, union = _paired_iou_union(boxes1, boxes2)
    lt = torch.min(boxes1[:, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[:, 0] * wh[:, 1]
    return iou - (area - union) / area


def varifocal_loss(
    logits: torch.Tensor, target_score: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Element-wise varifocal loss (no reduction).

    ``BCE(logits, q) * w`` with ``q`` the IoU-valued target score of the true class (0 elsewhere)
    and ``w = alpha * sigmoid(logits)^gamma * (1 - t) + q``, the prediction term detached.
    """
    pred_score = torch.sigmoid(logits).detach()
    weight = alpha * pred_score.pow(gamma) * (1 - target) + target_score
    return F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")


class RTDETRCriterion(nn.Module):
    """Loss of RT-DETR (v1 and v2).

    Args:
        num_classes: K.
        matcher: a ``HungarianMatcher``.
        weight_dict: e.g. {"loss_vfl": 1, "loss_bbox": 5, "loss_giou": 2}; unlisted losses are dropped.
        losses: subset of ("vfl", "focal", "boxes").
        alpha, gamma: classification loss parameters.
        boxes_weight_format: None, "iou" or "giou" (v2 option: weight GIoU by / use as VFL target).
        share_matched_indices: reuse the final-layer matching for auxiliary layers.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        losses: Sequence[str] = ("vfl", "boxes"),
        alpha: float = 0.75,
        gamma: float = 2.0,
        boxes_weight_format: Optional[str] = None,
        share_matched_indices: bool = False,
    ):
        super().__init__()
        unknown = set(losses) - {"vfl", "focal", "boxes"}
        if unknown:
            raise ValueError(f"Unknown losses {sorted(unknown)}; available: 'vfl', 'focal', 'boxes'.")
        if boxes_weight_format not in (None, "iou", "giou"):
            raise ValueError(f"boxes_weight_format must be None, 'iou' or 'giou', got {boxes_weight_format!r}.")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = list(losses)
        self.alpha = alpha
        self.gamma = gamma
        self.boxes_weight_format = boxes_weight_format
        self.share_matched_indices = share_matched_indices

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _src_idx(indices) -> Tuple[torch.Tensor, torch.Tensor]:
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    def _matched(self, outputs, targets, indices):
        idx = self._src_idx(indices)
        device = outputs["pred_logits"].device
        idx = (idx[0].to(device), idx[1].to(device))
        tgt_boxes = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices)], 0)
        tgt_labels = torch.cat([t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices)])
        return idx, tgt_boxes, tgt_labels

    def _one_hot_targets(self, logits, idx, tgt_labels, num_classes):
        target_classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
        target_classes[idx] = tgt_labels.to(logits.device)
        return F.one_hot(target_classes, num_classes=num_classes + 1)[..., :-1]

    # ------------------------------------------------------------------ losses
    def loss_vfl(self, outputs, targets, indices, num_boxes, num_classes, values=None):
        idx, tgt_boxes, tgt_labels = self._matched(outputs, targets, indices)
        logits = outputs["pred_logits"]
        if values is None:
            src_boxes = outputs["pred_boxes"][idx]
            values = paired_box_iou(
                box_convert(src_boxes, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy")
            ).detach()
        target = self._one_hot_targets(logits, idx, tgt_labels, num_classes)
        score = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        score[idx] = values.to(score.dtype)
        target_score = score.unsqueeze(-1) * target
        loss = varifocal_loss(logits, target_score, target, self.alpha, self.gamma)
        return {"loss_vfl": loss.mean(1).sum() * logits.shape[1] / num_boxes}

    def loss_focal(self, outputs, targets, indices, num_boxes, num_classes, values=None):
        idx, _, tgt_labels = self._matched(outputs, targets, indices)
        logits = outputs["pred_logits"]
        target = self._one_hot_targets(logits, idx, tgt_labels, num_classes).to(logits.dtype)
        loss = sigmoid_focal_loss(logits, target, self.alpha, self.gamma, reduction="none")
        return {"loss_focal": loss.mean(1).sum() * logits.shape[1] / num_boxes}

    def loss_boxes(self, outputs, targets, indices, num_boxes, num_classes, boxes_weight=None):
        idx, tgt_boxes, _ = self._matched(outputs, targets, indices)
        src_boxes = outputs["pred_boxes"][idx]
        loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_boxes
        loss_giou = 1 - paired_generalized_box_iou(
            box_convert(src_boxes, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy")
        )
        if boxes_weight is not None:
            loss_giou = loss_giou * boxes_weight
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou.sum() / num_boxes}

    def _meta(self, loss, outputs, targets, indices) -> dict:
        if self.boxes_weight_format is None:
            return {}
        idx, tgt_boxes, _ = self._matched(outputs, targets, indices)
        src = box_convert(outputs["pred_boxes"][idx].detach(), "cxcywh", "xyxy")
        tgt = box_convert(tgt_boxes, "cxcywh", "xyxy")
        if self.boxes_weight_format == "iou":
            w = paired_box_iou(src, tgt)
        else:
            w = paired_generalized_box_iou(src, tgt)
        if loss == "boxes":
            return {"boxes_weight": w}
        if loss == "vfl":
            return {"values": w}
        return {}

    def _compute(self, outputs, targets, indices, num_boxes, suffix="", num_classes=None) -> Dict[str, torch.Tensor]:
        num_classes = self.num_classes if num_classes is None else num_classes
        fns = {"vfl": self.loss_vfl, "focal": self.loss_focal, "boxes": self.loss_boxes}
        result = {}
        for name in self.losses:
            meta = self._meta(name, outputs, targets, indices)
            for k, v in fns[name](outputs, targets, indices, num_boxes, num_classes, **meta).items():
                if k in self.weight_dict:
                    result[k + suffix] = v * self.weight_dict[k]
        return result

    @staticmethod
    def get_cdn_matched_indices(dn_meta, targets) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Denoising positives are matched to their own GT: query dn_positive_idx[i] <-> gt tiled."""
        indices = []
        for i, t in enumerate(targets):
            n = len(t["labels"])
            if n > 0:
                gt_idx = torch.arange(n, dtype=torch.int64).tile(dn_meta["dn_num_group"])
                pos = dn_meta["dn_positive_idx"][i].cpu()
                assert len(pos) == len(gt_idx)
                indices.append((pos, gt_idx))
            else:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
        return indices

    def num_boxes(self, targets, device) -> float:
        """Average number of GT boxes per process (all-reduced when distributed), at least 1."""
        n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], dtype=torch.float, device=device)
        world = comm.get_world_size()
        if world > 1:
            dist.all_reduce(n)
        return torch.clamp(n / world, min=1).item()

    def forward(self, outputs: dict, targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: decoder output dict (pred_logits/pred_boxes and optional aux_outputs,
                enc_aux_outputs + enc_meta, dn_aux_outputs + dn_meta).
            targets: per image {"labels": (T_i,) int64, "boxes": (T_i, 4) normalized cxcywh}.

        Returns:
            weighted losses: loss_{vfl,bbox,giou}, ..._aux_{i}, ..._dn_{i}, ..._enc_{i}.
        """
        num_boxes = self.num_boxes(targets, outputs["pred_logits"].device)
        main = {"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}
        indices = self.matcher(main, targets)
        losses = self._compute(main, targets, indices, num_boxes)

        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            aux_indices = indices if self.share_matched_indices else self.matcher(aux, targets)
            losses.update(self._compute(aux, targets, aux_indices, num_boxes, f"_aux_{i}"))

        if "dn_aux_outputs" in outputs:
            dn_meta = outputs["dn_meta"]
            dn_indices = self.get_cdn_matched_indices(dn_meta, targets)
            dn_num_boxes = num_boxes * dn_meta["dn_num_group"]
            for i, aux in enumerate(outputs["dn_aux_outputs"]):
                losses.update(self._compute(aux, targets, dn_indices, dn_num_boxes, f"_dn_{i}"))

        if "enc_aux_outputs" in outputs:
            agnostic = outputs.get("enc_meta", {}).get("class_agnostic", False)
            enc_targets = targets
            if agnostic:
                enc_targets = [dict(t, labels=torch.zeros_like(t["labels"])) for t in targets]
            for i, aux in enumerate(outputs["enc_aux_outputs"]):
                enc_indices = self.matcher(aux, enc_targets)
                losses.update(
                    self._compute(
                        aux,
                        enc_targets,
                        enc_indices,
                        num_boxes,
                        f"_enc_{i}",
                        num_classes=1 if agnostic else self.num_classes,
                    )
                )
        return losses
