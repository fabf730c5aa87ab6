"""Where a detector looks: Grad-CAM-family maps of any layer (the ``grad-cam`` package) and the
sampling points of the decoder's deformable cross-attention, for RT-DETR-style models
(:class:`~mlla_rtdetr.modeling.RTDETR`).

Layers are named by role, so two models (e.g. an RT-DETR baseline and its MLLA variant) are shown
at the same places: ``backbone:S3`` .. ``backbone:S5`` (the backbone maps the encoder reads, by
stride 8 / 16 / 32), ``encoder:S3`` .. ``encoder:S5`` (the encoder's output maps, what the
decoder attends to), or any module by its name in the model (``encoder.encoder.0`` is the
intra-scale block, an MLLA block in the MLLA-encoder recipes; ``backbone.layers.3`` an MLLA
stage). Maps of (B, C, H, W) and token sequences (B, H*W, C) are both accepted.

The maps are computed on the model in eval mode, not deploy()-ed (module names stay those of
the config). Detection targets for the gradient methods: the class logit (``score``) or the sum
of the box coordinates (``box``) of the chosen queries, summed.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = [
    "CAM_METHODS",
    "DetectorOutputs",
    "LayerTaps",
    "QueryTarget",
    "box_mask",
    "compute_cams",
    "deformable_attention",
    "map_in_boxes",
    "top_queries",
]

CAM_METHODS = ("eigencam", "gradcam", "layercam", "gradcam++", "xgradcam", "hirescam")
TARGET_KINDS = ("score", "box")


def _cam_class(method: str):
    import pytorch_grad_cam as pgc

    classes = {"eigencam": pgc.EigenCAM, "gradcam": pgc.GradCAM, "layercam": pgc.LayerCAM,
               "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM, "hirescam": pgc.HiResCAM}
    if method not in classes:
        raise ValueError(f"Unknown CAM method {method!r}; use one of {list(classes)}.")
    return classes[method]


def _level(stride: int) -> str:
    return f"S{int(round(math.log2(stride)))}"


class LayerTaps:
    """Identity modules through which the backbone's and the encoder's output maps pass, so that
    every map of the model is a module output (what grad-cam hooks), plus name resolution.

    Use as a context manager (the hooks are removed on exit)."""

    def __init__(self, model: nn.Module):
        self.model = model
        shapes = model.backbone.output_shape()
        self.backbone_roles = {f: f"backbone:{_level(shapes[f].stride)}" for f in model.in_features}
        strides = getattr(model.encoder, "out_strides", None) or [shapes[f].stride for f in model.in_features]
        self.encoder_roles = [f"encoder:{_level(s)}" for s in strides]
        self.taps: Dict[str, nn.Module] = {r: nn.Identity() for r in
                                           list(self.backbone_roles.values()) + self.encoder_roles}
        self._handles = [
            model.backbone.register_forward_hook(self._tap_backbone),
            model.encoder.register_forward_hook(self._tap_encoder),
        ]

    def _tap_backbone(self, module, args, out):
        return {k: self.taps[self.backbone_roles[k]](v) if k in self.backbone_roles else v for k, v in out.items()}

    def _tap_encoder(self, module, args, out):
        return [self.taps[r](v) for r, v in zip(self.encoder_roles, out)]

    @property
    def roles(self) -> List[str]:
        return list(self.taps)

    def resolve(self, layer: str) -> nn.Module:
        """The module whose output is ``layer`` (a role or a module name)."""
        if layer in self.taps:
            return self.taps[layer]
        try:
            return self.model.get_submodule(layer)
        except AttributeError:
            from ..errors import ConfigError

            tops = [n for n, _ in self.model.named_modules() if n and n.count(".") <= 2][:12]
            raise ConfigError(f"Layer {layer!r} is neither a role ({', '.join(self.roles)}) nor a module of "
                              f"{type(self.model).__name__} (e.g. {', '.join(tops)}, ...).") from None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()

    def __enter__(self) -> "LayerTaps":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class DetectorOutputs(nn.Module):
    """``images -> (B, Q, K + 4)``: the class logits then the boxes (normalized cxcywh) of
    ``model.forward_raw``, one tensor as grad-cam expects."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_raw(images)
        return torch.cat([out["pred_logits"], out["pred_boxes"].to(out["pred_logits"].dtype)], -1)


class QueryTarget:
    """Grad-CAM target of one image: the sum over the chosen (query, class) pairs of the class
    logit (``kind="score"``) or of the four box coordinates (``kind="box"``)."""

    def __init__(self, queries: Sequence[int], classes: Sequence[int], num_classes: int, kind: str = "score"):
        if kind not in TARGET_KINDS:
            raise ValueError(f"target kind must be one of {TARGET_KINDS}, got {kind!r}")
        self.queries = torch.as_tensor(list(queries), dtype=torch.long)
        self.classes = torch.as_tensor(list(classes), dtype=torch.long)
        self.num_classes = num_classes
        self.kind = kind

    def __call__(self, output: torch.Tensor) -> torch.Tensor:  # (Q, K + 4)
        q = self.queries.to(output.device)
        if self.kind == "score":
            return output[q, self.classes.to(output.device)].sum()
        return output[q, self.num_classes:].sum()


def _to_map(hw: Tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """grad-cam reshape_transform: (B, C, h, w) as is; tokens (B, N, C) to (B, C, h, w) with the
    aspect ratio of the input ``hw``."""

    def transform(x):
        if isinstance(x, (tuple, list)):
            x = x[0]
        if x.dim() == 4:
            return x
        if x.dim() != 3:
            raise ValueError(f"Cannot show a map of shape {tuple(x.shape)}: expected (B, C, H, W) or (B, H*W, C).")
        b, n, c = x.shape
        h = int(round(math.sqrt(n * hw[0] / hw[1])))
        w = n // max(h, 1)
        if h * w != n:
            raise ValueError(f"{n} tokens do not make an {hw[0]}:{hw[1]} map.")
        return x.transpose(1, 2).reshape(b, c, h, w)

    return transform


@torch.no_grad()
def top_queries(model: nn.Module, images: torch.Tensor, num: int = 3, min_score: float = 0.3
                ) -> List[List[Tuple[int, int, float, List[float]]]]:
    """Per image, the ``num`` best (query, class, score, box cxcywh) pairs by sigmoid score, those
    below ``min_score`` left out but the best one always kept."""
    out = model.forward_raw(images)
    probs = out["pred_logits"].float().sigmoid()
    b, q, k = probs.shape
    result = []
    for i in range(b):
        scores, idx = probs[i].flatten().topk(min(num, q * k))
        picks = []
        for j, (s, flat) in enumerate(zip(scores.tolist(), idx.tolist())):
            if j and s < min_score:
                break
            query, cls = divmod(flat, k)
            picks.append((query, cls, s, out["pred_boxes"][i, query].float().tolist()))
        result.append(picks)
    return result


def compute_cams(model: nn.Module, images: torch.Tensor, layers: Sequence[str], method: str,
                 targets: Optional[Sequence[QueryTarget]] = None) -> Dict[str, np.ndarray]:
    """``{layer: (B, H, W) float32 in [0, 1]}``: the map of ``method`` for each layer (one layer at
    a time), at the input resolution (grad-cam resizes and min-max normalizes each map).

    Args:
        images: (B, 3, H, W) normalized model input.
        targets: one per image (gradient methods); EigenCAM uses none.
    """
    cam_class = _cam_class(method)
    wrapper = DetectorOutputs(model).eval()
    hw = (int(images.shape[2]), int(images.shape[3]))
    maps = {}
    with LayerTaps(model) as taps:
        for layer in layers:
            module = taps.resolve(layer)
            seen = []
            handle = module.register_forward_hook(lambda mod, args, out: seen.append(out))
            try:
                with cam_class(model=wrapper, target_layers=[module], reshape_transform=_to_map(hw)) as cam:
                    maps[layer] = cam(input_tensor=images, targets=list(targets) if targets is not None else None)
            except (AttributeError, TypeError):
                if seen and not isinstance(seen[0], torch.Tensor):
                    from ..errors import ConfigError

                    children = [f"{layer}.{n}" for n, _ in module.named_children()][:4]
                    raise ConfigError(f"Layer {layer!r} outputs a {type(seen[0]).__name__}, not one map: pick a "
                                      f"module inside it ({', '.join(children) or 'none'}) or a role.") from None
                raise
            finally:
                handle.remove()
    return maps


def box_mask(boxes_xyxy: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels inside any of the (N, 4) XYXY boxes (pixels of an H x W image)."""
    mask = np.zeros(hw, dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4):
        mask[max(int(math.floor(y0)), 0):max(int(math.ceil(y1)), 0),
             max(int(math.floor(x0)), 0):max(int(math.ceil(x1)), 0)] = True
    return mask


def map_in_boxes(cam: np.ndarray, boxes_xyxy: np.ndarray) -> Optional[Dict[str, float]]:
    """How much of a map lies on the objects: mean inside the boxes over mean outside
    (``ratio``, > 1: the map is higher on the objects), the share of the map's sum inside the
    boxes (``energy_in_boxes``) and the share of the image the boxes cover (``box_area``,
    what ``energy_in_boxes`` would be for a flat map). None without boxes or background."""
    mask = box_mask(boxes_xyxy, cam.shape)
    if not mask.any() or mask.all():
        return None
    inside, outside = float(cam[mask].mean()), float(cam[~mask].mean())
    total = float(cam.sum())
    return {"inside_mean": inside, "outside_mean": outside,
            "ratio": inside / outside if outside > 0 else float("inf"),
            "energy_in_boxes": float(cam[mask].sum()) / total if total > 0 else float("nan"),
            "box_area": float(mask.mean())}


@torch.no_grad()
def deformable_attention(model: nn.Module, images: torch.Tensor, queries: Sequence[Sequence[int]],
                         decoder_layer: int = -1) -> List[List[Dict[str, object]]]:
    """Sampling points and attention weights of chosen queries in one decoder layer's
    multi-scale deformable cross-attention (the eval forward, no denoising queries).

    Returns per image, per chosen query: ``{"query", "levels": [{"shape": (H_l, W_l),
    "xy": (heads * P_l, 2) normalized, "weight": (heads * P_l,)}]}``; the weights of a head sum to
    1 over all its points, so a level's weights sum to (its share of the attention) * heads.
    """
    layers = model.decoder.decoder.layers
    index = decoder_layer if decoder_layer >= 0 else len(layers) + decoder_layer
    if not 0 <= index < len(layers):
        raise ValueError(f"decoder layer {decoder_layer} out of range: the decoder has {len(layers)} layers.")
    attn = layers[index].cross_attn
    captured = {}

    def hook(module, args, output):
        query, reference_points, _, spatial_shapes = args[:4]
        captured["shapes"] = [tuple(int(v) for v in s) for s in spatial_shapes]
        captured["loc"], captured["w"] = module.sampling_locations_and_weights(query, reference_points, spatial_shapes)

    handle = attn.register_forward_hook(hook)
    try:
        model.forward_raw(images)
    finally:
        handle.remove()
    loc, w = captured["loc"].float(), captured["w"].float()  # (B, Q, heads, P, 2), (B, Q, heads, P)
    splits = list(attn.num_points_list)
    result = []
    for i, picks in enumerate(queries):
        per_query = []
        for q in picks:
            levels = []
            for lvl, (l_loc, l_w) in enumerate(zip(loc[i, q].split(splits, dim=1), w[i, q].split(splits, dim=1))):
                levels.append({"shape": captured["shapes"][lvl], "xy": l_loc.reshape(-1, 2).numpy(),
                               "weight": l_w.reshape(-1).numpy()})
            per_query.append({"query": int(q), "levels": levels})
        result.append(per_query)
    return result
