"""The set criterion of RT-DETR, DEIM and D-FINE: varifocal / focal / matching-aware (MAL)
classification, L1 and GIoU box losses, and D-FINE's FGL and DDF distribution losses.

Losses are computed for the final decoder output, every auxiliary decoder layer
(``_aux_{i}``), D-FINE's first-layer boxes (``_pre``), the denoising queries of every layer
(``_dn_{i}``, ``_dn_pre``; matched by construction) and the encoder top-k proposals
(``_enc_{i}``); each is multiplied by its ``weight_dict`` entry. Key names are the RT-DETRv2 /
DEIM ones.

Options of the one criterion (official DEIM ``DEIMCriterion`` semantics, ShihuaHuang95/DEIM @ a9aa4ad):

* ``"mal"`` (DEIM): BCE against ``IoU^gamma`` of the matched class, negatives weighted by
  ``p^gamma`` (times ``mal_alpha`` if set), positives by 1.
* ``"local"`` (D-FINE): FGL, the interpolated cross-entropy of each matched edge distribution
  against the two bins around the target edge, weighted by the box IoU; and DDF, the
  self-distillation of every earlier layer's distributions towards the last layer's (KL at
  temperature 5, weighted by the teacher's confidence or, for matched queries, the IoU; matched and
  unmatched queries averaged separately and mixed by the square roots of their counts).
* ``use_uni_set`` (GO-LSD): the box and local losses of every layer (and the encoder's box loss)
  use the union of the matches of all layers (each query keeps its most frequent target),
  normalised by the size of that union.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import nn
from torchvision.ops import box_convert, sigmoid_focal_loss

from .decoder.fdr import box_to_distance

__all__ = [
    "RTDETRCriterion",
    "paired_box_iou",
    "paired_generalized_box_iou",
    "varifocal_loss",
    "matching_aware_loss",
    "union_of_matches",
]

LOSSES = ("vfl", "focal", "mal", "boxes", "local")


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


def matching_aware_loss(
    logits: torch.Tensor, target_score: torch.Tensor, target: torch.Tensor, gamma: float,
    alpha: Optional[float] = None,
) -> torch.Tensor:
    """Element-wise matching-aware loss of DEIM (no reduction).

    ``BCE(logits, q^gamma) * w`` with ``q`` the IoU-valued target score of the true class (0
    elsewhere) and ``w = alpha * sigmoid(logits)^gamma * (1 - t) + t`` (``alpha`` omitted when None),
    the prediction term detached.
    """
    pred_score = torch.sigmoid(logits).detach()
    target_score = target_score.pow(gamma)
    if alpha is not None:
        weight = alpha * pred_score.pow(gamma) * (1 - target) + target
    else:
        weight = pred_score.pow(gamma) * (1 - target) + target
    return F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")


def union_of_matches(
    indices: List[Tuple[torch.Tensor, torch.Tensor]], others: Sequence[List[Tuple[torch.Tensor, torch.Tensor]]]
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """GO-LSD's union of the matches of several layers, per image.

    Every (query, target) pair of ``indices`` and ``others`` is counted; pairs are visited from the
    most to the least frequent and each query keeps the target of the first pair it appears in.
    Returns per image (query_idx, target_idx) int64.
    """
    merged = indices
    for other in others:
        merged = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(merged, other)]
    result = []
    for rows, cols in merged:
        pairs = torch.cat([rows[:, None], cols[:, None]], 1)
        unique, counts = torch.unique(pairs, return_counts=True, dim=0)
        ordered = unique[torch.argsort(counts, descending=True)]
        target_of = {}
        for row, col in ordered.tolist():
            target_of.setdefault(row, col)
        result.append((torch.tensor(list(target_of.keys()), dtype=torch.int64, device=rows.device),
                       torch.tensor(list(target_of.values()), dtype=torch.int64, device=rows.device)))
    return result


class RTDETRCriterion(nn.Module):
    """Loss of RT-DETR (v1 and v2), DEIM and D-FINE.

    Args:
        num_classes: K.
        matcher: a ``HungarianMatcher``.
        weight_dict: e.g. {"loss_vfl": 1, "loss_bbox": 5, "loss_giou": 2}; unlisted losses are dropped.
        losses: subset of ("vfl", "focal", "mal", "boxes", "local").
        alpha, gamma: classification loss parameters (MAL uses ``gamma`` and ``mal_alpha``).
        boxes_weight_format: None, "iou" or "giou" (v2 option: weight GIoU by / use as VFL / MAL target).
        share_matched_indices: reuse the final-layer matching for auxiliary layers.
        mal_alpha: MAL's weight of the negatives (None: 1, the DEIM recipes).
        reg_max: D-FINE's bins per edge minus one (the "local" losses).
        use_uni_set: GO-LSD union of the matches of all layers for the box and local losses.
        ddf_temperature: temperature of the DDF distillation.
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
        mal_alpha: Optional[float] = None,
        reg_max: int = 32,
        use_uni_set: bool = False,
        ddf_temperature: float = 5.0,
    ):
        super().__init__()
        unknown = set(losses) - set(LOSSES)
        if unknown:
            raise ValueError(f"Unknown losses {sorted(unknown)}; available: {', '.join(map(repr, LOSSES))}.")
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
        self.mal_alpha = mal_alpha
        self.reg_max = reg_max
        self.use_uni_set = use_uni_set
        self.ddf_temperature = ddf_temperature

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
    def _iou_targets(self, outputs, targets, indices, num_classes, values=None):
        """One-hot class targets (B, Q, K) and their IoU-valued scores (the matched prediction's IoU
        with its target, or ``values``) for the VFL / MAL losses."""
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
        return target, score.unsqueeze(-1) * target

    def loss_vfl(self, outputs, targets, indices, num_boxes, num_classes, values=None):
        logits = outputs["pred_logits"]
        target, target_score = self._iou_targets(outputs, targets, indices, num_classes, values)
        loss = varifocal_loss(logits, target_score, target, self.alpha, self.gamma)
        return {"loss_vfl": loss.mean(1).sum() * logits.shape[1] / num_boxes}

    def loss_focal(self, outputs, targets, indices, num_boxes, num_classes, values=None):
        idx, _, tgt_labels = self._matched(outputs, targets, indices)
        logits = outputs["pred_logits"]
        target = self._one_hot_targets(logits, idx, tgt_labels, num_classes).to(logits.dtype)
        loss = sigmoid_focal_loss(logits, target, self.alpha, self.gamma, reduction="none")
        return {"loss_focal": loss.mean(1).sum() * logits.shape[1] / num_boxes}

    def loss_mal(self, outputs, targets, indices, num_boxes, num_classes, values=None):
        logits = outputs["pred_logits"]
        target, target_score = self._iou_targets(outputs, targets, indices, num_classes, values)
        loss = matching_aware_loss(logits, target_score, target, self.gamma, self.mal_alpha)
        return {"loss_mal": loss.mean(1).sum() * logits.shape[1] / num_boxes}

    def loss_local(self, outputs, targets, indices, num_boxes, num_classes, context=None):
        """FGL on the matched queries and, for layers that carry a teacher, DDF on all queries."""
        if "pred_corners" not in outputs:
            return {}
        bins = self.reg_max + 1
        idx, tgt_boxes, _ = self._matched(outputs, targets, indices)
        tgt_xyxy = box_convert(tgt_boxes, "cxcywh", "xyxy")
        corners = outputs["pred_corners"][idx].reshape(-1, bins)
        with torch.no_grad():
            target_bins, weight_right, weight_left = box_to_distance(
                outputs["ref_points"][idx].detach(), tgt_xyxy, self.reg_max, context["reg_scale"], context["up"]
            )
        ious = paired_box_iou(box_convert(outputs["pred_boxes"][idx], "cxcywh", "xyxy"), tgt_xyxy)
        weight = ious.unsqueeze(-1).repeat(1, 1, 4).reshape(-1).detach()
        left = target_bins.long()
        fgl = (F.cross_entropy(corners, left, reduction="none") * weight_left.reshape(-1)
               + F.cross_entropy(corners, left + 1, reduction="none") * weight_right.reshape(-1))
        losses = {"loss_fgl": (fgl * weight.float()).sum() / num_boxes}

        if "teacher_corners" in outputs:
            student = outputs["pred_corners"].reshape(-1, bins)
            teacher = outputs["teacher_corners"].reshape(-1, bins)
            if not torch.equal(student, teacher):  # the last layer is its own teacher: no DDF
                losses["loss_ddf"] = self._ddf(outputs, student, teacher, idx, ious, context)
        return losses

    def _ddf(self, outputs, student, teacher, idx, ious, context) -> torch.Tensor:
        t = self.ddf_temperature
        weight = outputs["teacher_logits"].sigmoid().max(dim=-1)[0]  # (B, Q) teacher confidence
        matched = torch.zeros_like(weight, dtype=torch.bool)
        matched[idx] = True
        matched = matched.unsqueeze(-1).repeat(1, 1, 4).reshape(-1)
        weight[idx] = ious.reshape_as(weight[idx]).to(weight.dtype)
        weight = weight.unsqueeze(-1).repeat(1, 1, 4).reshape(-1).detach()
        kl = F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher.detach() / t, dim=1), reduction="none")
        loss = weight * (t**2) * kl.sum(-1)
        if not context["is_dn"] or context.get("ddf_counts") is None:
            # matched / unmatched counts of the (non-denoising) layers, per 8 images; the denoising
            # layers reuse them, as official
            batch_scale = 8 / outputs["pred_boxes"].shape[0]
            counts = ((matched.sum() * batch_scale) ** 0.5, ((~matched).sum() * batch_scale) ** 0.5)
            if not context["is_dn"]:
                context["ddf_counts"] = counts
        else:
            counts = context["ddf_counts"]
        num_pos, num_neg = counts
        pos = loss[matched].mean() if matched.any() else 0
        neg = loss[~matched].mean() if (~matched).any() else 0
        return (pos * num_pos + neg * num_neg) / (num_pos + num_neg)

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
        if loss in ("vfl", "mal"):
            return {"values": w}
        return {}

    def _compute(self, outputs, targets, indices, num_boxes, suffix="", num_classes=None, union=None,
                 context=None, union_losses=("boxes", "local")) -> Dict[str, torch.Tensor]:
        """Weighted losses of one output. ``union``: (indices, num_boxes) of the GO-LSD union set,
        used instead for the losses in ``union_losses``."""
        num_classes = self.num_classes if num_classes is None else num_classes
        fns = {"vfl": self.loss_vfl, "focal": self.loss_focal, "mal": self.loss_mal, "boxes": self.loss_boxes,
               "local": self.loss_local}
        result = {}
        for name in self.losses:
            ind, n = (union if union is not None and name in union_losses else (indices, num_boxes))
            meta = self._meta(name, outputs, targets, ind)
            if name == "local":
                meta = {"context": context}
            for k, v in fns[name](outputs, targets, ind, n, num_classes, **meta).items():
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

    def num_boxes(self, targets, device, count: Optional[int] = None) -> float:
        """Average number of GT boxes (or of ``count`` matches) per process (all-reduced when
        distributed), at least 1."""
        if count is None:
            count = sum(len(t["labels"]) for t in targets)
        n = torch.as_tensor([float(count)], dtype=torch.float, device=device)
        world = comm.get_world_size()
        if world > 1:
            dist.all_reduce(n)
        return torch.clamp(n / world, min=1).item()

    def forward(self, outputs: dict, targets: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: decoder output dict (pred_logits/pred_boxes and optional aux_outputs,
                enc_aux_outputs + enc_meta, dn_aux_outputs + dn_meta; D-FINE: pred_corners,
                ref_points, up, reg_scale, pre_outputs, dn_pre_outputs).
            targets: per image {"labels": (T_i,) int64, "boxes": (T_i, 4) normalized cxcywh}.

        Returns:
            weighted losses: loss_{vfl,mal,bbox,giou,fgl,ddf}, ..._aux_{i}, ..._pre, ..._dn_{i},
            ..._dn_pre, ..._enc_{i}.
        """
        device = outputs["pred_logits"].device
        num_boxes = self.num_boxes(targets, device)
        main = {k: v for k, v in outputs.items() if "aux" not in k and "pre_outputs" not in k}
        context = {"up": outputs.get("up"), "reg_scale": outputs.get("reg_scale"), "is_dn": False}
        indices = self.matcher(main, targets)

        aux_outputs = outputs.get("aux_outputs", [])
        aux_indices = [indices if self.share_matched_indices else self.matcher(aux, targets) for aux in aux_outputs]
        pre = outputs.get("pre_outputs")
        pre_indices = self.matcher(pre, targets) if pre is not None else None
        agnostic = outputs.get("enc_meta", {}).get("class_agnostic", False)
        enc_targets = [dict(t, labels=torch.zeros_like(t["labels"])) for t in targets] if agnostic else targets
        enc_outputs = outputs.get("enc_aux_outputs", [])
        enc_indices = [self.matcher(aux, enc_targets) for aux in enc_outputs]

        union = None
        if self.use_uni_set and aux_outputs:
            go = union_of_matches(indices, aux_indices + ([pre_indices] if pre is not None else []) + enc_indices)
            union = (go, self.num_boxes(targets, device, count=sum(len(src) for src, _ in go)))

        losses = self._compute(main, targets, indices, num_boxes, union=union, context=context)
        for i, (aux, ind) in enumerate(zip(aux_outputs, aux_indices)):
            losses.update(self._compute(aux, targets, ind, num_boxes, f"_aux_{i}", union=union, context=context))
        if pre is not None:
            losses.update(self._compute(pre, targets, pre_indices, num_boxes, "_pre", union=union, context=context))
        for i, (aux, ind) in enumerate(zip(enc_outputs, enc_indices)):
            losses.update(
                self._compute(aux, enc_targets, ind, num_boxes, f"_enc_{i}", num_classes=1 if agnostic else None,
                              union=union, context=context, union_losses=("boxes",))
            )

        if "dn_aux_outputs" in outputs:
            dn_meta = outputs["dn_meta"]
            dn_indices = self.get_cdn_matched_indices(dn_meta, targets)
            dn_num_boxes = num_boxes * dn_meta["dn_num_group"]
            context["is_dn"] = True
            for i, aux in enumerate(outputs["dn_aux_outputs"]):
                losses.update(self._compute(aux, targets, dn_indices, dn_num_boxes, f"_dn_{i}", context=context))
            if "dn_pre_outputs" in outputs:
                losses.update(
                    self._compute(outputs["dn_pre_outputs"], targets, dn_indices, dn_num_boxes, "_dn_pre",
                                  context=context)
                )
        return losses
