"""D-FINE decoder: RT-DETR's query selection and denoising with Fine-grained Distribution
Refinement (FDR) of the boxes.

What it shares with :class:`~.rtdetr_decoder.RTDETRTransformer` (it is a subclass): input
projections (an identity for levels that already have ``hidden_dim`` channels), anchors, the
encoder head and IoU-aware query selection, contrastive denoising, the query position head and
the deformable cross-attention. What differs (official D-FINE, as in ShihuaHuang95/DEIM @ a9aa4ad):

* decoder layers (:class:`~.rtdetr_decoder.TransformerDecoderLayer` with ``gated=True``): a gate
  merges the cross-attention output, the deformable attention samples the memory itself (no value
  / output projections), the query position embedding is clamped to [-10, 10];
* boxes: layer 0 predicts a box the RT-DETR way (``pre_bbox_head``); it becomes the reference box
  of every later prediction. Each layer's ``dec_bbox_head`` outputs per-edge logits over
  ``reg_max + 1`` bins, added to the previous layer's logits (residual refinement of the
  distributions); a box is the reference box moved by the expected edge distances (see
  :mod:`.fdr`). ``up`` and ``reg_scale`` are fixed parameters (not trained) as in the official
  model;
* scores: a location-quality estimator (:class:`LQE`) adds a term computed from the top-4
  probabilities of each edge distribution to the class logits;
* ``layer_scale`` > 1: the layers after ``eval_idx`` (training only) are wider; their inputs are
  stretched along the channels by nearest interpolation.

Training outputs (beyond RT-DETR's): ``pred_corners`` (B, Q, 4 * (reg_max + 1)), ``ref_points``
(B, Q, 4), ``up``, ``reg_scale``; every auxiliary / denoising layer also carries the last layer's
corners and logits as ``teacher_corners`` / ``teacher_logits`` (the DDF self-distillation);
``pre_outputs`` / ``dn_pre_outputs`` hold the layer-0 boxes.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from ..layers import MLP, Linear
from .denoising import inverse_sigmoid
from .fdr import distance_to_box, distribution_to_distance, weighting_function
from .rtdetr_decoder import RTDETRTransformer, TransformerDecoder, TransformerDecoderLayer, _pairs

__all__ = ["DFINETransformer", "FDRDecoder", "LQE"]


class LQE(nn.Module):
    """Location-quality estimator: class logits + MLP(top-k probabilities of each edge and their
    mean). scores (B, Q, K), corners (B, Q, 4 * (reg_max + 1)) -> (B, Q, K)."""

    def __init__(self, k: int, hidden_dim: int, num_layers: int, reg_max: int, act: str = "relu"):
        super().__init__()
        self.k = k
        self.reg_max = reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers, act=act)
        init.constant_(self.reg_conf.layers[-1].bias, 0)
        init.constant_(self.reg_conf.layers[-1].weight, 0)

    def forward(self, scores: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        b, q, _ = corners.shape
        prob = F.softmax(corners.reshape(b, q, 4, self.reg_max + 1), dim=-1)
        top, _ = prob.topk(self.k, dim=-1)
        stat = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(b, q, -1))


class FDRDecoder(TransformerDecoder):
    """The D-FINE layer stack: ``layers`` (the first ``eval_idx + 1`` of width C, the rest of width
    ``round(layer_scale * C)``) and one :class:`LQE` per layer (``lqe_layers``)."""

    def __init__(self, layer: nn.Module, wide_layer: nn.Module, num_layers: int, reg_max: int,
                 eval_idx: int = -1, layer_scale: float = 1, act: str = "relu"):
        super().__init__(layer, num_layers, eval_idx)
        narrow = self.eval_idx + 1
        self.layers = nn.ModuleList(
            list(self.layers[:narrow]) + [copy.deepcopy(wide_layer) for _ in range(num_layers - narrow)]
        )
        self.layer_scale = layer_scale
        self.reg_max = reg_max
        self.lqe_layers = nn.ModuleList(LQE(4, 64, 2, reg_max, act=act) for _ in range(num_layers))

    def forward(
        self,
        target: torch.Tensor,
        ref_points_unact: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        bbox_head: nn.ModuleList,
        score_head: nn.ModuleList,
        query_pos_head: nn.Module,
        pre_bbox_head: nn.Module,
        up: torch.Tensor,
        reg_scale: torch.Tensor,
        attn_mask: Optional[torch.Tensor] = None,
    ):
        """target (B, Q, C), ref_points_unact (B, Q, 4), memory (B, N, C).

        Returns (stacked over the returned layers: all in training, ``eval_idx`` at inference):
        boxes (n, B, Q, 4), logits (n, B, Q, K), corners (n, B, Q, 4 * (reg_max + 1)), reference
        boxes (n, B, Q, 4); and the layer-0 boxes (B, Q, 4) and logits (B, Q, K).
        """
        project = weighting_function(self.reg_max, up, reg_scale)
        output, value = target, memory
        output_detach = corners_undetach = 0
        boxes, logits, corners_out, refs = [], [], [], []
        ref_points_detach = torch.sigmoid(ref_points_unact)
        for i, layer in enumerate(self.layers):
            query_pos_embed = query_pos_head(ref_points_detach).clamp(min=-10, max=10)
            if i > self.eval_idx and self.layer_scale > 1:
                query_pos_embed = F.interpolate(query_pos_embed, scale_factor=self.layer_scale)
                value = F.interpolate(memory, size=query_pos_embed.shape[-1])
                output = F.interpolate(output, size=query_pos_embed.shape[-1])
                output_detach = output.detach()
            output = layer(output, ref_points_detach.unsqueeze(2), value, spatial_shapes, attn_mask,
                           query_pos_embed=query_pos_embed)
            if i == 0:
                pre_boxes = torch.sigmoid(pre_bbox_head(output) + inverse_sigmoid(ref_points_detach))
                pre_logits = score_head[0](output)
                ref_points_initial = pre_boxes.detach()
            corners = bbox_head[i](output + output_detach) + corners_undetach
            box = distance_to_box(ref_points_initial, distribution_to_distance(corners, project, self.reg_max),
                                  reg_scale)
            if self.training or i == self.eval_idx:
                logits.append(self.lqe_layers[i](score_head[i](output), corners))
                boxes.append(box)
                corners_out.append(corners)
                refs.append(ref_points_initial)
                if not self.training:
                    break
            corners_undetach = corners
            ref_points_detach = box.detach()
            output_detach = output.detach()
        return (torch.stack(boxes), torch.stack(logits), torch.stack(corners_out), torch.stack(refs),
                pre_boxes, pre_logits)


class DFINETransformer(RTDETRTransformer):
    """D-FINE decoder (see the module docstring).

    Args: those of :class:`RTDETRTransformer` (``version`` is always "v2"), plus
        reg_max: bins per edge minus one (32).
        reg_scale: curvature of the weighting function (4; 8 for D-FINE-X).
        layer_scale: width factor of the training-only layers after ``eval_idx`` (1: none wider).
    """

    identity_input_proj = True

    def __init__(self, *args, reg_max: int = 32, reg_scale: float = 4.0, layer_scale: float = 1, **kwargs):
        kwargs.setdefault("denoising_abs_box_size", True)  # the D-FINE / DEIM denoising
        if kwargs.get("version", "v2") != "v2":
            raise ValueError("DFINETransformer is built on the RT-DETRv2 decoder: version must be 'v2'.")
        # plain attributes the builders below need (nn.Module.__init__ in super() keeps them)
        self.reg_max = reg_max
        self.layer_scale = layer_scale
        self._reg_scale_value = float(reg_scale)
        super().__init__(*args, **kwargs)

    def _build_decoder(self, layer_kwargs: dict, num_layers: int, eval_idx: int) -> None:
        # fixed (never trained) parameters, as official: they are part of official checkpoints
        self.up = nn.Parameter(torch.tensor([0.5]), requires_grad=False)
        self.reg_scale = nn.Parameter(torch.tensor([self._reg_scale_value]), requires_grad=False)
        layer = TransformerDecoderLayer(**layer_kwargs, gated=True)
        wide = dict(layer_kwargs)
        wide["d_model"] = round(self.layer_scale * layer_kwargs["d_model"])
        wide["dim_feedforward"] = round(self.layer_scale * layer_kwargs["dim_feedforward"])
        wide_layer = TransformerDecoderLayer(**wide, gated=True)
        self.decoder = FDRDecoder(layer, wide_layer, num_layers, self.reg_max, eval_idx, self.layer_scale,
                                  act=layer_kwargs["activation"])

    def _build_heads(self, num_layers: int) -> None:
        c, k, act = self.hidden_dim, self.num_classes, self.mlp_act
        wide = round(self.layer_scale * c)
        n_narrow = self.decoder.eval_idx + 1
        dims = [c] * n_narrow + [wide] * (num_layers - n_narrow)
        self.dec_score_head = nn.ModuleList(Linear(d, k) for d in dims)
        self.pre_bbox_head = MLP(c, c, 4, 3, act=act)
        self.dec_bbox_head = nn.ModuleList(MLP(d, d, 4 * (self.reg_max + 1), 3, act=act) for d in dims)

    def _reset_parameters(self):
        super()._reset_parameters()
        init.constant_(self.pre_bbox_head.layers[-1].weight, 0)
        init.constant_(self.pre_bbox_head.layers[-1].bias, 0)

    def forward(self, feats: List[torch.Tensor], targets: Optional[List[dict]] = None) -> dict:
        """
        Args:
            feats: encoder outputs, per level (B, C_l, H_l, W_l).
            targets: training only; per image {"labels": (N_i,), "boxes": (N_i, 4) normalized cxcywh}.

        Returns:
            {"pred_logits": (B, Q, K), "pred_boxes": (B, Q, 4)}; in training also the FDR outputs
            and auxiliary outputs listed in the module docstring.
        """
        memory, spatial_shapes = self._get_encoder_input(feats)

        dn_contents, dn_ref_unact, attn_mask, dn_meta = self._denoising_queries(targets, memory.device)
        content, ref_unact, enc_topk_bboxes, enc_topk_logits = self._get_decoder_input(
            memory, spatial_shapes, dn_contents, dn_ref_unact
        )
        boxes, logits, corners, refs, pre_boxes, pre_logits = self.decoder(
            content,
            ref_unact,
            memory,
            spatial_shapes,
            self.dec_bbox_head,
            self.dec_score_head,
            self.query_pos_head,
            self.pre_bbox_head,
            self.up,
            self.reg_scale,
            attn_mask=attn_mask,
        )
        if not self.training:
            return {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}

        if dn_meta is not None:
            split = dn_meta["dn_num_split"]
            dn_pre_logits, pre_logits = torch.split(pre_logits, split, dim=1)
            dn_pre_boxes, pre_boxes = torch.split(pre_boxes, split, dim=1)
            dn_logits, logits = torch.split(logits, split, dim=2)
            dn_boxes, boxes = torch.split(boxes, split, dim=2)
            dn_corners, corners = torch.split(corners, split, dim=2)
            dn_refs, refs = torch.split(refs, split, dim=2)

        out = {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "pred_corners": corners[-1],
            "ref_points": refs[-1],
            "up": self.up,
            "reg_scale": self.reg_scale,
        }
        if self.aux_loss:
            out["aux_outputs"] = _fdr_layers(logits[:-1], boxes[:-1], corners[:-1], refs[:-1], corners[-1], logits[-1])
            out["enc_aux_outputs"] = _pairs([enc_topk_logits], [enc_topk_bboxes])
            out["pre_outputs"] = {"pred_logits": pre_logits, "pred_boxes": pre_boxes}
            out["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
            if dn_meta is not None:
                out["dn_aux_outputs"] = _fdr_layers(dn_logits, dn_boxes, dn_corners, dn_refs, dn_corners[-1],
                                                    dn_logits[-1])
                out["dn_pre_outputs"] = {"pred_logits": dn_pre_logits, "pred_boxes": dn_pre_boxes}
                out["dn_meta"] = dn_meta
        return out

    def deploy(self) -> "DFINETransformer":
        """Drop the training-only layers after ``eval_idx`` and their heads (eval outputs unchanged)."""
        keep = self.decoder.eval_idx + 1
        self.decoder.layers = self.decoder.layers[:keep]
        self.decoder.lqe_layers = self.decoder.lqe_layers[:keep]
        self.decoder.num_layers = keep
        self.dec_score_head = self.dec_score_head[:keep]
        self.dec_bbox_head = self.dec_bbox_head[:keep]
        return self


def _fdr_layers(logits, boxes, corners, refs, teacher_corners, teacher_logits) -> List[dict]:
    return [
        {"pred_logits": a, "pred_boxes": b, "pred_corners": c, "ref_points": d,
         "teacher_corners": teacher_corners, "teacher_logits": teacher_logits}
        for a, b, c, d in zip(logits, boxes, corners, refs)
    ]
