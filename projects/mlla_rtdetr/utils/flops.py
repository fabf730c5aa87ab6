"""Parameter counts and FLOPs.

FLOPs come from fvcore's jit-tracing counter. fvcore counts **one fused multiply-add as one flop**,
i.e. its numbers are MACs; :class:`FlopReport` reports ``gflops = 2 * gmacs`` which is the convention
of the RT-DETR / MLLA papers. Ops fvcore has no formula for (activations, softmax, additions) are
not counted and are listed in ``FlopReport.unsupported``.

Two totals: :func:`model_flops` counts what our ``forward_raw`` executes (everything fvcore has a
formula for); :func:`official_gflops` counts the way the official RT-DETR numbers do (convolutions
and matrix products only, with the encoder box head on every memory token as the official decoder
runs it), which reproduces the official models' counts to 0.1 GFLOPs.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter, OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> Dict[str, Any]:
    """Parameter counts of ``model``.

    Returns ``{"total", "trainable", "frozen", "per_module": {child_name: {"total", "trainable"}}}``
    where ``per_module`` lists the direct children (backbone, encoder, decoder, ...) in order.
    Shared parameters are counted once.
    """
    seen = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    per_module: "OrderedDict[str, Dict[str, int]]" = OrderedDict()
    for name, child in model.named_children():
        t = sum(p.numel() for p in child.parameters())
        tr = sum(p.numel() for p in child.parameters() if p.requires_grad)
        if t:
            per_module[name] = {"total": t, "trainable": tr}
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        per_module["(own)"] = {
            "total": own,
            "trainable": sum(p.numel() for p in model.parameters(recurse=False) if p.requires_grad),
        }
    return {"total": total, "trainable": trainable, "frozen": total - trainable, "per_module": per_module}


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------
def _shape(val) -> List[int]:
    return val.type().sizes()


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``aten::scaled_dot_product_attention(q, k, v, ...)``: q (..., L, E), k (..., S, E),
    v (..., S, Ev): ``L*S*E`` for ``q @ k^T`` plus ``L*S*Ev`` for ``attn @ v``, per batch/head."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    length, emb = q[-2], q[-1]
    src = k[-2]
    return batch * length * src * (emb + v[-1])


#: handles we add on top of fvcore's defaults
def _avg_pool_handle():
    from fvcore.nn.jit_handles import elementwise_flop_counter

    return elementwise_flop_counter(1, 0)  # one add per input element, as fvcore's adaptive pool


EXTRA_OP_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::avg_pool2d": _avg_pool_handle(),
}

# Ops that cost (almost) nothing or are not arithmetic; silence their "unsupported" warnings.
_IGNORED_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul", "aten::mul_", "aten::div",
    "aten::div_", "aten::sigmoid", "aten::sigmoid_", "aten::relu", "aten::relu_", "aten::gelu",
    "aten::silu", "aten::silu_", "aten::softmax", "aten::elu", "aten::exp", "aten::log",
    "aten::clamp", "aten::clamp_", "aten::clamp_min", "aten::max_pool2d", "aten::topk", "aten::sort",
    "aten::cumsum", "aten::pow", "aten::sqrt", "aten::rsqrt", "aten::neg", "aten::sin", "aten::cos",
    "aten::mean", "aten::sum", "aten::abs", "aten::gather", "aten::masked_fill", "aten::fill_",
    "aten::zeros_like", "aten::ones_like", "aten::where", "aten::leaky_relu", "aten::hardsigmoid",
    "aten::hardswish", "aten::tanh", "aten::inverse", "aten::log_softmax", "aten::scatter",
    "aten::eq", "aten::ne", "aten::lt", "aten::gt", "aten::ge", "aten::le", "aten::max",
    "aten::min", "aten::argmax", "aten::floor_divide", "aten::remainder", "aten::bitwise_not",
    "aten::logical_and", "aten::logical_or", "aten::any", "aten::all", "aten::linspace",
    "aten::arange", "aten::meshgrid", "aten::expand_as", "aten::reciprocal", "aten::square",
    "aten::flip", "aten::roll", "aten::repeat", "aten::index", "aten::dropout", "aten::feature_dropout",
    "aten::clone", "aten::copy_", "aten::embedding", "aten::nonzero", "aten::unbind", "aten::new_zeros",
    "aten::new_ones", "aten::full_like", "aten::detach", "aten::lift_fresh",
)


#: fvcore operator names of convolutions and matrix products (the official GFLOPs count these).
MATMUL_OPERATORS = ("conv", "linear", "matmul", "bmm", "einsum", "addmm")


class RawForward(nn.Module):
    """Wraps a detector so that ``forward(images)`` = ``model.forward_raw(images)`` and returns a
    tuple ``(pred_logits (B,Q,K), pred_boxes (B,Q,4))`` — tensors only, so jit tracing works."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.model.forward_raw(images)
        return out["pred_logits"], out["pred_boxes"]


@dataclasses.dataclass
class FlopReport:
    """Result of :func:`count_flops`; all counts are for the given input (batch included)."""

    macs: float  # fvcore's "flops" (one multiply-add = 1)
    by_module: Dict[str, float]  # MACs per direct child of the analyzed module
    by_operator: Dict[str, float]  # MACs per aten op
    unsupported: Dict[str, int]  # ops fvcore could not count -> number of calls
    by_submodule: Dict[str, float] = dataclasses.field(default_factory=dict)  # MACs of every named module

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        """GFLOPs = 2 x GMACs (a multiply-add is two floating-point operations)."""
        return 2.0 * self.macs / 1e9

    def as_dict(self) -> Dict[str, Any]:
        return {
            "gmacs": self.gmacs,
            "gflops": self.gflops,
            "by_module_gflops": {k: 2.0 * v / 1e9 for k, v in self.by_module.items()},
            "by_operator_gflops": {k: 2.0 * v / 1e9 for k, v in self.by_operator.items()},
            "unsupported_ops": dict(self.unsupported),
        }


def count_flops(module: nn.Module, inputs: Tuple[Any, ...], ignore_unsupported: bool = True) -> FlopReport:
    """Count the FLOPs of ``module(*inputs)`` with fvcore (jit tracing; ``module`` must take and
    return tensors, wrap detectors in :class:`RawForward`).

    Args:
        module: the module to analyze; put it in eval mode first for inference FLOPs.
        inputs: tuple of positional inputs, e.g. ``(images,)`` with images (B, 3, H, W).
        ignore_unsupported: drop the zero-cost ops listed in ``_IGNORED_OPS`` from the
            "unsupported" report.
    """
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**EXTRA_OP_HANDLES)
    if ignore_unsupported:
        analysis.set_op_handle(**{k: None for k in _IGNORED_OPS})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        total = analysis.total()
        by_module_all = analysis.by_module()
        by_operator = analysis.by_operator()
        unsupported = analysis.unsupported_ops()
    by_module: "OrderedDict[str, float]" = OrderedDict()
    for name, _ in module.named_children():
        by_module[name] = float(by_module_all.get(name, 0))
    # RawForward hides the detector one level down; report the detector's children instead.
    if isinstance(module, RawForward):
        by_module = OrderedDict(
            (name, float(by_module_all.get(f"model.{name}", 0))) for name, _ in module.model.named_children()
        )
    prefix = "model." if isinstance(module, RawForward) else ""
    return FlopReport(
        macs=float(total),
        by_module=dict(by_module),
        by_operator={k: float(v) for k, v in Counter(by_operator).items()},
        unsupported=dict(unsupported),
        by_submodule={k[len(prefix):]: float(v) for k, v in by_module_all.items() if k.startswith(prefix) and k},
    )


def model_flops(model: nn.Module, height: int, width: int, batch_size: int = 1,
                device: Optional[str] = None) -> FlopReport:
    """Inference FLOPs of a detector's ``forward_raw`` on a random (batch_size, 3, height, width)
    input in [0, 1]. The model is put in eval mode (and restored afterwards)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        images = torch.rand(batch_size, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
        return count_flops(RawForward(model), (images,))
    finally:
        model.train(was_training)


def official_gflops(model: nn.Module, height: int = 640, width: int = 640,
                    report: Optional[FlopReport] = None) -> float:
    """GFLOPs of one image the way the official RT-DETR numbers count them: 2 x the multiply-adds
    of convolutions and matrix products (:data:`MATMUL_OPERATORS`) of ``forward_raw`` in eval
    mode, with the decoder's encoder box head (``decoder.enc_bbox_head``, row-wise) counted on all
    memory tokens as the official RT-DETR v1 / v2 decoders run it; ours runs it on the selected
    queries only (identical outputs), as the official D-FINE decoder does (no correction there).
    Pass the :func:`model_flops` ``report`` of this size to skip the trace."""
    from ..modeling.decoder.dfine_decoder import DFINETransformer

    report = report or model_flops(model, height, width)
    macs = sum(v for k, v in report.by_operator.items() if k in MATMUL_OPERATORS)
    decoder = getattr(model, "decoder", None)
    head = getattr(decoder, "enc_bbox_head", None)
    # The official D-FINE decoder runs the head on the selected queries only, as ours does.
    if head is not None and "decoder.enc_bbox_head" in report.by_submodule and not isinstance(decoder, DFINETransformer):
        per_token = sum(m.in_features * m.out_features for m in head.modules() if isinstance(m, nn.Linear))
        executed = report.by_submodule["decoder.enc_bbox_head"] / per_token
        strides = getattr(model.decoder, "feat_strides", [8, 16, 32])
        tokens = sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)
        macs += (tokens - executed) * per_token
    return 2.0 * macs / 1e9
