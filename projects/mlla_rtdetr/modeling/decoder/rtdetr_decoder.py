"""RT-DETR transformer decoder (v1 and v2 behaviour in one module).

Pipeline (shapes for B images, N = sum_l H_l*W_l memory tokens, Q queries, D denoising queries):

1. ``input_proj``: 1x1 conv + BN per level; flatten to memory (B, N, C).
2. Encoder head: ``enc_output`` (Linear + LayerNorm) on memory masked by the anchor valid mask,
   ``enc_score_head`` -> (B, N, K) class logits.
3. IoU-aware query selection: the top-Q tokens by max class logit give the initial contents
   (detached) and, through ``enc_bbox_head`` + anchors, the reference boxes (detached logits).
   The box head is row-wise, so it is evaluated on the Q selected tokens only (same values).
4. Optional denoising queries are prepended (training only).
5. ``decoder``: L post-norm layers (self-attn, multi-scale deformable cross-attn, FFN) with
   iterative box refinement; per-layer ``dec_score_head`` / ``dec_bbox_head``.

Anchors / valid masks depend only on the feature sizes: they are computed for each input size on
first use and cached (never stored in checkpoints); for the eval size they equal the official
``decoder.anchors`` / ``decoder.valid_mask`` buffers bit for bit.

Differences between versions are small and selected with ``version``: v1 uses the same number
of sampling points on every level and clamps the FFN output to the float16 range before the
last norm; key names are the v2 ones in both cases (the checkpoint converter maps v1 names).
Batches without any ground truth get one dummy denoising group in both versions (the v2 fix
068dfde; official v1 would skip denoising there).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import init

from ...errors import ConfigError
from ..layers import MLP, Linear, dense_grad, get_activation, linear
from .denoising import get_contrastive_denoising_training_group, inverse_sigmoid
from .ms_deform_attn import MSDeformableAttention, per_level_num_points

__all__ = ["MLP", "TransformerDecoderLayer", "TransformerDecoder", "RTDETRTransformer", "generate_anchors"]


def bias_init_with_prob(prior_prob: float = 0.01) -> float:
    return float(-math.log((1 - prior_prob) / prior_prob))


def generate_anchors(
    spatial_shapes: Sequence[Tuple[int, int]],
    grid_size: float = 0.05,
    eps: float = 1e-2,
    device=None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Anchor boxes (in logit space) and their validity for every memory token.

    Level l with grid h x w gives anchors ``[(x+0.5)/w, (y+0.5)/h, grid_size*2^l, grid_size*2^l]``
    (rows outer, columns inner). Anchors not strictly inside (eps, 1-eps) are invalid and set
    to +inf.

    Returns:
        anchors (1, N, 4) float32, valid_mask (1, N, 1) bool.
    """
    anchors = []
    cpu = torch.device("cpu")  # computed on the CPU whatever the default device (meta, when counting)
    for lvl, (h, w) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=cpu), torch.arange(w, dtype=torch.float32, device=cpu),
            indexing="ij",
        )
        grid_xy = (torch.stack([grid_x, grid_y], -1) + 0.5) / torch.tensor([w, h], dtype=torch.float32, device=cpu)
        wh = torch.full_like(grid_xy, grid_size * (2.0**lvl))
        anchors.append(torch.cat([grid_xy, wh], -1).reshape(1, h * w, 4))
    anchors = torch.cat(anchors, 1)
    valid_mask = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    anchors = torch.where(valid_mask, anchors, torch.inf)
    return anchors.to(device), valid_mask.to(device)


class TransformerDecoderLayer(nn.Module):
    """Post-norm decoder layer: self-attention, deformable cross-attention, FFN."""

    def __init__(
        self,
        d_model: int = 256,
        n_head: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        n_levels: int = 3,
        n_points=4,
        cross_attn_method: str = "default",
        clamp_ffn: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, n_levels, n_points, method=cross_attn_method)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.clamp_ffn = clamp_ffn
        init.xavier_uniform_(self.linear1.weight)
        init.xavier_uniform_(self.linear2.weight)

    def forward(
        self,
        target: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        attn_mask: Optional[torch.Tensor] = None,
        memory_mask: Optional[torch.Tensor] = None,
        query_pos_embed: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """target (B, Q, C), reference_points (B, Q, 1, 4) -> (B, Q, C)."""
        q = k = target if query_pos_embed is None else target + query_pos_embed
        attn_out, _ = self.self_attn(q, k, value=target, attn_mask=attn_mask, need_weights=False)
        target = self.norm1(target + self.dropout1(attn_out))

        query = target if query_pos_embed is None else target + query_pos_embed
        cross_out = self.cross_attn(query, reference_points, memory, spatial_shapes, memory_mask)
        target = self.norm2(target + self.dropout2(cross_out))

        ffn_out = self.linear2(self.dropout3(linear(self.linear1, target, self.activation)))
        target = target + self.dropout4(ffn_out)
        if self.clamp_ffn:
            target = target.clamp(min=-65504, max=65504)
        return self.norm3(target)


class TransformerDecoder(nn.Module):
    """Stack of decoder layers with iterative box refinement.

    In training every layer's prediction is returned (the box of layer i > 0 keeps the gradient
    of the previous refined box, as in DINO's look-forward-twice); at inference decoding stops at
    ``eval_idx``.
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, eval_idx: int = -1):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(decoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        if not 0 <= self.eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} out of range for {num_layers} decoder layers.")

    def forward(
        self,
        target: torch.Tensor,
        ref_points_unact: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        bbox_head: nn.ModuleList,
        score_head: nn.ModuleList,
        query_pos_head: nn.Module,
        attn_mask: Optional[torch.Tensor] = None,
        memory_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns boxes (n_out, B, Q, 4) normalized cxcywh and logits (n_out, B, Q, K)."""
        out_bboxes, out_logits = [], []
        ref_points_detach = torch.sigmoid(ref_points_unact)
        ref_points = ref_points_detach
        output = target
        for i, layer in enumerate(self.layers):
            query_pos_embed = query_pos_head(ref_points_detach)
            output = layer(
                output,
                ref_points_detach.unsqueeze(2),
                memory,
                spatial_shapes,
                attn_mask,
                memory_mask,
                query_pos_embed,
            )
            inter_ref_bbox = torch.sigmoid(bbox_head[i](output) + inverse_sigmoid(ref_points_detach))
            if self.training:
                out_logits.append(score_head[i](output))
                if i == 0:
                    out_bboxes.append(inter_ref_bbox)
                else:
                    out_bboxes.append(torch.sigmoid(bbox_head[i](output) + inverse_sigmoid(ref_points)))
            elif i == self.eval_idx:
                out_logits.append(score_head[i](output))
                out_bboxes.append(inter_ref_bbox)
                break
            ref_points = inter_ref_bbox
            ref_points_detach = inter_ref_bbox.detach()
        return torch.stack(out_bboxes), torch.stack(out_logits)


class RTDETRTransformer(nn.Module):
    """RT-DETR decoder with query selection, denoising and auxiliary heads.

    Args (LazyConfig friendly; defaults are the official v2 ones):
        num_classes: K (sigmoid classification, no background class).
        hidden_dim, nhead, dim_feedforward, dropout, activation: transformer sizes.
        num_queries: Q selected encoder tokens.
        feat_channels / feat_strides: per encoder output level; extra levels (``num_levels`` >
            len(feat_channels)) are made with stride-2 3x3 convs.
        num_points: points per level: one int, or one per level (list / tuple / ListConfig; only v2
            may use different counts per level, e.g. the official ``sp1`` recipe's [1, 1, 1]).
        num_layers: decoder layers; ``eval_idx`` the layer whose output is used at inference.
        num_denoising, label_noise_ratio, box_noise_scale: contrastive denoising.
        learn_query_content: learned query contents instead of selected encoder features.
        eval_spatial_size: (H, W); anchors for it are precomputed (others are computed on first
            use and cached per feature size).
        cross_attn_method: "default" | "discrete"; query_select_method: "default" | "one2many" |
            "agnostic".
        version: "v2" or "v1".
    """

    def __init__(
        self,
        num_classes: int = 80,
        hidden_dim: int = 256,
        num_queries: int = 300,
        feat_channels: Sequence[int] = (256, 256, 256),
        feat_strides: Sequence[int] = (8, 16, 32),
        num_levels: int = 3,
        num_points=4,
        nhead: int = 8,
        num_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        learn_query_content: bool = False,
        eval_spatial_size: Optional[Sequence[int]] = None,
        eval_idx: int = -1,
        eps: float = 1e-2,
        aux_loss: bool = True,
        cross_attn_method: str = "default",
        query_select_method: str = "default",
        version: str = "v2",
    ):
        super().__init__()
        if version not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2', got '{version}'.")
        if len(feat_channels) > num_levels or len(feat_strides) != len(feat_channels):
            raise ValueError(
                f"feat_channels {list(feat_channels)} / feat_strides {list(feat_strides)} must have the same "
                f"length, at most num_levels={num_levels}."
            )
        num_points = per_level_num_points(num_points, num_levels)
        if version == "v1" and len(set(num_points)) > 1:
            raise ConfigError(
                f"RT-DETR v1 uses the same number of points on every level, got num_points={num_points}; "
                "use version='v2' for per-level counts."
            )
        if query_select_method not in ("default", "one2many", "agnostic"):
            raise ValueError(f"Unknown query_select_method '{query_select_method}'.")
        feat_strides = list(feat_strides)
        for _ in range(num_levels - len(feat_strides)):
            feat_strides.append(feat_strides[-1] * 2)

        self.version = version
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.feat_strides = feat_strides
        self.num_levels = num_levels
        self.eps = eps
        self.num_layers = num_layers
        self.eval_spatial_size = list(eval_spatial_size) if eval_spatial_size else None
        self.aux_loss = aux_loss
        self.query_select_method = query_select_method
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.learn_query_content = learn_query_content

        self.num_feat_levels = len(feat_channels)
        self._build_input_proj(list(feat_channels))
        layer = TransformerDecoderLayer(
            hidden_dim,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            num_levels,
            num_points,
            cross_attn_method=cross_attn_method,
            clamp_ffn=(version == "v1"),
        )
        self.decoder = TransformerDecoder(layer, num_layers, eval_idx)

        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
            init.normal_(self.denoising_class_embed.weight[:-1])
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)

        self.enc_output = nn.Sequential(
            OrderedDict([("proj", Linear(hidden_dim, hidden_dim)), ("norm", nn.LayerNorm(hidden_dim))])
        )
        self.enc_score_head = Linear(hidden_dim, 1 if query_select_method == "agnostic" else num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_score_head = nn.ModuleList(Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_layers))

        # anchors depend only on the feature sizes: cache them (never saved in checkpoints)
        self._anchor_cache: Dict[tuple, Tuple[torch.Tensor, torch.Tensor]] = {}
        if self.eval_spatial_size:
            self.get_anchors(self.eval_spatial_shapes(), "cpu")
        self._reset_parameters()

    def class_dependent_tensors(self) -> Dict[str, int]:
        """Tensors whose first dimension is indexed by class -> trailing non-class rows (the
        denoising embedding's padding row). A checkpoint trained on other classes fine-tunes these
        (``mlla_rtdetr.checkpoint.class_rows``)."""
        heads = [] if self.query_select_method == "agnostic" else ["enc_score_head"]
        heads += [f"dec_score_head.{i}" for i in range(len(self.dec_score_head))]
        out = {f"{h}.{p}": 0 for h in heads for p in ("weight", "bias")}
        if self.num_denoising > 0:
            out["denoising_class_embed.weight"] = 1
        return out

    def _reset_parameters(self):
        bias = bias_init_with_prob(0.01)
        init.constant_(self.enc_score_head.bias, bias)
        init.constant_(self.enc_bbox_head.layers[-1].weight, 0)
        init.constant_(self.enc_bbox_head.layers[-1].bias, 0)
        for cls_head, reg_head in zip(self.dec_score_head, self.dec_bbox_head):
            init.constant_(cls_head.bias, bias)
            init.constant_(reg_head.layers[-1].weight, 0)
            init.constant_(reg_head.layers[-1].bias, 0)
        init.xavier_uniform_(self.enc_output.proj.weight)
        if self.learn_query_content:
            init.xavier_uniform_(self.tgt_embed.weight)
        init.xavier_uniform_(self.query_pos_head.layers[0].weight)
        init.xavier_uniform_(self.query_pos_head.layers[1].weight)
        for m in self.input_proj:
            init.xavier_uniform_(m.conv.weight)

    def _build_input_proj(self, feat_channels: List[int]):
        self.input_proj = nn.ModuleList()
        for c in feat_channels:
            self.input_proj.append(
                nn.Sequential(
                    OrderedDict(
                        [
                            ("conv", nn.Conv2d(c, self.hidden_dim, 1, bias=False)),
                            ("norm", nn.BatchNorm2d(self.hidden_dim)),
                        ]
                    )
                )
            )
        c = feat_channels[-1]
        for _ in range(self.num_levels - len(feat_channels)):
            self.input_proj.append(
                nn.Sequential(
                    OrderedDict(
                        [
                            ("conv", nn.Conv2d(c, self.hidden_dim, 3, 2, padding=1, bias=False)),
                            ("norm", nn.BatchNorm2d(self.hidden_dim)),
                        ]
                    )
                )
            )
            c = self.hidden_dim

    # ----------------------------------------------------------------------------------------
    def eval_spatial_shapes(self) -> Optional[List[Tuple[int, int]]]:
        """Feature sizes of the eval input size (official: int(H/s), int(W/s))."""
        if not self.eval_spatial_size:
            return None
        h, w = self.eval_spatial_size
        return [(int(h / s), int(w / s)) for s in self.feat_strides]

    def get_anchors(self, spatial_shapes: Sequence[Tuple[int, int]], device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cached ``generate_anchors`` for these feature sizes on ``device``."""
        key = (tuple(tuple(int(v) for v in s) for s in spatial_shapes), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = generate_anchors(key[0], eps=self.eps, device=device)
        return self._anchor_cache[key]

    def _get_encoder_input(self, feats: List[torch.Tensor]) -> Tuple[torch.Tensor, List[Tuple[int, int]]]:
        """feats: per level (B, C_l, H_l, W_l) -> memory (B, N, C), spatial shapes."""
        if len(feats) != self.num_feat_levels:
            raise ValueError(
                f"Decoder got {len(feats)} feature maps, expected {self.num_feat_levels} (len(feat_channels))."
            )
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        for i in range(len(feats), self.num_levels):
            proj.append(self.input_proj[i](feats[-1] if i == len(feats) else proj[-1]))
        spatial_shapes = [(int(p.shape[2]), int(p.shape[3])) for p in proj]
        memory = torch.cat([dense_grad(p).flatten(2).permute(0, 2, 1) for p in proj], 1)
        return memory, spatial_shapes

    def select_topk(self, logits: torch.Tensor, k: int) -> torch.Tensor:
        """IoU-aware query selection. logits (B, N, K) -> token indices (B, k)."""
        if self.query_select_method == "default":
            return torch.topk(logits.max(-1).values, k, dim=-1).indices
        if self.query_select_method == "one2many":
            return torch.topk(logits.flatten(1), k, dim=-1).indices // self.num_classes
        return torch.topk(logits.squeeze(-1), k, dim=-1).indices

    def _get_decoder_input(
        self,
        memory: torch.Tensor,
        spatial_shapes: List[Tuple[int, int]],
        dn_contents: Optional[torch.Tensor] = None,
        dn_ref_unact: Optional[torch.Tensor] = None,
    ):
        anchors, valid_mask = self.get_anchors(spatial_shapes, memory.device)
        memory = valid_mask.to(memory.dtype) * memory
        output_memory = self.enc_output(memory)
        enc_logits = self.enc_score_head(output_memory)
        topk_ind = self.select_topk(enc_logits, self.num_queries)

        def gather(t):
            return t.gather(1, topk_ind.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

        topk_memory = gather(output_memory)
        if self.training:
            # on all N tokens as official: the weight gradients then sum the same rows in the same
            # order (on the Q selected ones they differ by ulps, which Adam's first steps amplify)
            topk_coord_unact = gather(self.enc_bbox_head(output_memory) + anchors)
        else:
            # the box head is row-wise: on the selected tokens only it gives the same boxes at ~Q/N of the cost
            topk_coord_unact = self.enc_bbox_head(topk_memory) + anchors[0][topk_ind]  # anchors: (1, N, 4)
        enc_topk_bboxes, enc_topk_logits = None, None
        if self.training:
            enc_topk_bboxes = torch.sigmoid(topk_coord_unact)
            enc_topk_logits = gather(enc_logits)
        if self.learn_query_content:
            content = self.tgt_embed.weight.unsqueeze(0).tile([memory.shape[0], 1, 1])
        else:
            content = topk_memory.detach()
        ref_unact = topk_coord_unact.detach()
        if dn_ref_unact is not None:
            ref_unact = torch.cat([dn_ref_unact, ref_unact], 1)
            content = torch.cat([dn_contents, content], 1)
        return content, ref_unact, enc_topk_bboxes, enc_topk_logits

    def forward(self, feats: List[torch.Tensor], targets: Optional[List[dict]] = None) -> dict:
        """
        Args:
            feats: encoder outputs, per level (B, C_l, H_l, W_l).
            targets: training only; per image {"labels": (N_i,), "boxes": (N_i, 4) normalized cxcywh}.

        Returns:
            {"pred_logits": (B, Q, K), "pred_boxes": (B, Q, 4)} and, in training,
            "aux_outputs" (decoder layers but the last), "enc_aux_outputs" (selected encoder
            proposals), "enc_meta", "dn_aux_outputs" and "dn_meta" (when denoising is on).
        """
        memory, spatial_shapes = self._get_encoder_input(feats)

        dn_contents = dn_ref_unact = attn_mask = dn_meta = None
        if self.training and self.num_denoising > 0:
            if targets is None:
                raise ValueError("Training with denoising needs targets (list of {'labels', 'boxes'}).")
            dn_contents, dn_ref_unact, attn_mask, dn_meta = get_contrastive_denoising_training_group(
                targets,
                self.num_classes,
                self.num_queries,
                self.denoising_class_embed,
                num_denoising=self.num_denoising,
                label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale,
                device=memory.device,
            )

        content, ref_unact, enc_topk_bboxes, enc_topk_logits = self._get_decoder_input(
            memory, spatial_shapes, dn_contents, dn_ref_unact
        )
        out_bboxes, out_logits = self.decoder(
            content,
            ref_unact,
            memory,
            spatial_shapes,
            self.dec_bbox_head,
            self.dec_score_head,
            self.query_pos_head,
            attn_mask=attn_mask,
        )

        if self.training and dn_meta is not None:
            dn_out_bboxes, out_bboxes = torch.split(out_bboxes, dn_meta["dn_num_split"], dim=2)
            dn_out_logits, out_logits = torch.split(out_logits, dn_meta["dn_num_split"], dim=2)

        out = {"pred_logits": out_logits[-1], "pred_boxes": out_bboxes[-1]}
        if self.training and self.aux_loss:
            out["aux_outputs"] = _pairs(out_logits[:-1], out_bboxes[:-1])
            out["enc_aux_outputs"] = _pairs([enc_topk_logits], [enc_topk_bboxes])
            out["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
            if dn_meta is not None:
                out["dn_aux_outputs"] = _pairs(dn_out_logits, dn_out_bboxes)
                out["dn_meta"] = dn_meta
        return out


def _pairs(logits, boxes) -> List[Dict[str, torch.Tensor]]:
    return [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits, boxes)]
