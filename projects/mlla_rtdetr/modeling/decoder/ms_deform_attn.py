"""Multi-scale deformable attention in pure PyTorch, RT-DETR v1/v2 style.

Each query samples ``num_points[l]`` locations on every feature level ``l`` around its reference
box, per attention head, and returns the attention-weighted sum of the sampled values. v2 allows a
different number of points per level (the ``sp1``/``sp2``/``sp3`` recipes); v1 is the special case
of equal counts. Values are sampled bilinearly (``F.grid_sample``) or, for the v2 "discrete"
recipes (``*_dsp_*``, deployable without a ``grid_sample`` kernel), at the nearest pixel.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence as SequenceABC
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from ...errors import ConfigError
from ..layers import Linear

__all__ = ["MSDeformableAttention", "deformable_attention_core", "per_level_num_points", "SAMPLING_METHODS"]

SAMPLING_METHODS = ("default", "discrete")


def per_level_num_points(num_points: Union[int, Sequence[int]], num_levels: int) -> List[int]:
    """Sampling points per feature level as a list of ``num_levels`` positive ints.

    ``num_points`` is one int for every level, or one int per level as a list, tuple or OmegaConf
    ``ListConfig`` (what a LazyConfig recipe or a ``model.decoder.num_points=[1,1,1]`` override
    gives). Anything else raises :class:`ConfigError`.
    """
    if isinstance(num_points, SequenceABC) and not isinstance(num_points, (str, bytes)):
        counts = list(num_points)
        if len(counts) != num_levels:
            example = [counts[0] if counts else 4] * num_levels
            raise ConfigError(
                f"num_points {counts} has {len(counts)} entries but the decoder samples {num_levels} "
                f"levels (num_levels={num_levels}); give one count per level, e.g. {example}, or a "
                "single int for all levels."
            )
    else:
        counts = [num_points] * num_levels
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ConfigError(
                f"num_points must be a positive int or a list of {num_levels} positive ints (one per "
                f"level), got {num_points!r}."
            )
    return [int(n) for n in counts]


def _check_sampling_method(method: str) -> str:
    if method not in SAMPLING_METHODS:
        raise ConfigError(
            f"Unknown deformable attention sampling method {method!r} (cross_attn_method); "
            f"use one of {list(SAMPLING_METHODS)}."
        )
    return method


def deformable_attention_core(
    value: torch.Tensor,
    spatial_shapes: Sequence[Tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    num_points_list: Sequence[int],
    method: str = "default",
) -> torch.Tensor:
    """Sample and aggregate multi-scale values.

    Args:
        value: (B, sum_l H_l*W_l, n_heads, head_dim) projected values, levels concatenated.
        spatial_shapes: [(H_l, W_l)] per level.
        sampling_locations: (B, Lq, n_heads, sum(num_points), 2), normalized (x, y) in [0, 1],
            points grouped level by level.
        attention_weights: (B, Lq, n_heads, sum(num_points)), softmax-normalized.
        num_points_list: number of points sampled on each level.
        method: "default" (bilinear ``grid_sample``, zero padding) or "discrete" (the value at
            pixel ``int(x * W + 0.5), int(y * H + 0.5)``, clamped to the map, as official v2).

    Returns:
        (B, Lq, n_heads * head_dim)
    """
    _check_sampling_method(method)
    bs, _, n_heads, head_dim = value.shape
    len_q = sampling_locations.shape[1]
    split_sizes = [h * w for h, w in spatial_shapes]
    # (B*n_heads, head_dim, sum HW) split per level
    value_list = value.permute(0, 2, 3, 1).flatten(0, 1).split(split_sizes, dim=-1)
    # (B*n_heads, Lq, P_total, 2)
    locations = sampling_locations.permute(0, 2, 1, 3, 4).flatten(0, 1)
    if method == "default":
        locations = 2 * locations - 1  # grid_sample's [-1, 1] convention
    location_list = locations.split(list(num_points_list), dim=-2)

    sampled = []
    for level, (h, w) in enumerate(spatial_shapes):
        if method == "default":
            value_l = value_list[level].reshape(bs * n_heads, head_dim, h, w)
            # (B*n_heads, head_dim, Lq, P_l)
            sampled.append(
                F.grid_sample(value_l, location_list[level], mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        else:
            sampled.append(_sample_nearest(value_list[level], h, w, location_list[level]))

    weights = attention_weights.permute(0, 2, 1, 3).reshape(bs * n_heads, 1, len_q, -1)
    output = (torch.cat(sampled, dim=-1) * weights).sum(-1)
    return output.reshape(bs, n_heads * head_dim, len_q).permute(0, 2, 1)


def _sample_nearest(value_l: torch.Tensor, h: int, w: int, locations: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel sampling of one level (the v2 "discrete" method).

    Pixel ``k`` is read for ``x`` in ``[(k - 0.5) / W, (k + 0.5) / W)``: it sits at ``k / W``, half a
    pixel from where ``grid_sample(align_corners=False)`` puts it, as in the official code (the
    dsp checkpoints were trained with this convention).

    Args:
        value_l: (N, C, H*W) values of the level.
        locations: (N, Lq, P, 2) normalized (x, y).

    Returns:
        (N, C, Lq, P). The result is a channels-last view of the (N, Lq*P, C) gathered rows, as in
        the official code: the layout fixes the order of the weighted sum that follows, so the
        outputs match the official ones bit for bit.
    """
    n, len_q, n_points, _ = locations.shape
    scale = torch.tensor([w, h], dtype=locations.dtype, device=locations.device)
    pixel = (locations * scale + 0.5).to(torch.int64)  # truncation toward zero, as official
    # official v2 clamps both coordinates to h - 1, which only equals this on square maps
    col = pixel[..., 0].clamp(0, w - 1).reshape(n, len_q * n_points)
    row = pixel[..., 1].clamp(0, h - 1).reshape(n, len_q * n_points)
    batch = torch.arange(n, device=value_l.device).unsqueeze(-1)
    gathered = value_l.transpose(1, 2)[batch, row * w + col]  # (N, Lq*P, C)
    return gathered.permute(0, 2, 1).reshape(n, -1, len_q, n_points)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention (Deformable-DETR) with per-level point counts.

    Args:
        embed_dim: channel width C.
        num_heads: attention heads; C must be divisible by it.
        num_levels: feature levels L.
        num_points: points per level: one int for all levels, or L ints (list, tuple or ListConfig).
        method: "default" (bilinear) or "discrete" (nearest pixel; the sampling offsets are frozen,
            as official: the rounding passes no gradient to them).
        offset_scale: offsets are ``offset * (1/n_l) * ref_wh * offset_scale`` for box references.
        projections: the value / output projections (``value_proj``, ``output_proj``) of
            Deformable-DETR and RT-DETR; D-FINE's decoder has none (the memory is sampled as it is,
            split into heads, and the heads' outputs are concatenated).

    The buffer ``num_points_scale`` (``1/n_l`` repeated ``n_l`` times per level) is derived from the
    arguments, so it is non-persistent: checkpoints never carry it.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: Union[int, List[int]] = 4,
        method: str = "default",
        offset_scale: float = 0.5,
        projections: bool = True,
    ):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ConfigError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        num_points_list = per_level_num_points(num_points, num_levels)
        _check_sampling_method(method)

        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points_list = num_points_list
        self.offset_scale = offset_scale
        self.method = method
        self.head_dim = embed_dim // num_heads
        total_points = sum(num_points_list)
        self.register_buffer(
            "num_points_scale",
            torch.tensor([1.0 / n for n in num_points_list for _ in range(n)], dtype=torch.float32),
            persistent=False,
        )

        self.sampling_offsets = Linear(embed_dim, num_heads * total_points * 2)
        self.attention_weights = Linear(embed_dim, num_heads * total_points)
        self.projections = projections
        if projections:
            self.value_proj = Linear(embed_dim, embed_dim)
            self.output_proj = Linear(embed_dim, embed_dim)
        self._reset_parameters()
        if method == "discrete":
            for p in self.sampling_offsets.parameters():
                p.requires_grad = False

    def _reset_parameters(self):
        init.constant_(self.sampling_offsets.weight, 0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.reshape(self.num_heads, 1, 2).tile([1, sum(self.num_points_list), 1])
        scaling = torch.cat([torch.arange(1, n + 1) for n in self.num_points_list]).reshape(1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((grid * scaling).flatten())
        init.constant_(self.attention_weights.weight, 0)
        init.constant_(self.attention_weights.bias, 0)
        if not self.projections:
            return
        init.xavier_uniform_(self.value_proj.weight)
        init.constant_(self.value_proj.bias, 0)
        init.xavier_uniform_(self.output_proj.weight)
        init.constant_(self.output_proj.bias, 0)

    def sampling_locations_and_weights(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Where each query samples and with what weight (also what attention figures show).

        Args:
            query: (B, Lq, C).
            reference_points: (B, Lq, 1, 4) normalized cxcywh boxes, or (B, Lq, L, 2) points.
            spatial_shapes: [(H_l, W_l)].

        Returns:
            locations (B, Lq, n_heads, sum(num_points), 2): normalized (x, y), points grouped level
            by level; weights (B, Lq, n_heads, sum(num_points)): softmax over all points of a head.
        """
        bs, len_q = query.shape[:2]
        total_points = sum(self.num_points_list)
        offsets = self.sampling_offsets(query).reshape(bs, len_q, self.num_heads, total_points, 2)
        weights = self.attention_weights(query).reshape(bs, len_q, self.num_heads, total_points)
        weights = F.softmax(weights, dim=-1)

        if reference_points.shape[-1] == 4:
            scale = self.num_points_scale.to(dtype=query.dtype).unsqueeze(-1)
            offset = offsets * scale * reference_points[:, :, None, :, 2:] * self.offset_scale
            locations = reference_points[:, :, None, :, :2] + offset
        elif reference_points.shape[-1] == 2:
            normalizer = torch.tensor(spatial_shapes, dtype=query.dtype, device=query.device).flip([1])
            # expand per-level reference points / normalizers to each level's points
            repeats = torch.tensor(self.num_points_list, device=query.device)
            normalizer = normalizer.repeat_interleave(repeats, dim=0)  # (P_total, 2)
            ref = reference_points.repeat_interleave(repeats, dim=2)  # (B, Lq, P_total, 2)
            locations = ref[:, :, None] + offsets / normalizer
        else:
            raise ValueError(f"Last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}.")
        return locations, weights

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: Sequence[Tuple[int, int]],
        value_mask: torch.Tensor = None,
    ) -> torch.Tensor:
        """
        Args:
            query: (B, Lq, C).
            reference_points: (B, Lq, 1, 4) normalized cxcywh boxes, or (B, Lq, L, 2) points.
            value: (B, Lv, C) flattened multi-scale memory.
            spatial_shapes: [(H_l, W_l)] with sum H_l*W_l == Lv.
            value_mask: optional (B, Lv), True for valid (non-padding) tokens.

        Returns:
            (B, Lq, C)
        """
        bs, len_v = value.shape[:2]

        if self.projections:
            value = self.value_proj(value)
        if value_mask is not None:
            value = value * value_mask.to(value.dtype).unsqueeze(-1)
        value = value.reshape(bs, len_v, self.num_heads, self.head_dim)

        locations, weights = self.sampling_locations_and_weights(query, reference_points, spatial_shapes)
        output = deformable_attention_core(value, spatial_shapes, locations, weights, self.num_points_list, self.method)
        return self.output_proj(output) if self.projections else output
