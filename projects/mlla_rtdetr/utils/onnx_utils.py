"""ONNX export of detectors and checks with onnxruntime.

Two export heads (``RawExport`` / ``TopKExport``):

* ``raw``:  ``images (N,3,H,W) in [0,1]`` -> ``pred_logits (N,Q,K)``, ``pred_boxes (N,Q,4)``
  (normalized cx, cy, w, h); the same tensors as ``model.forward_raw``.
* ``topk``: ``images``, ``orig_target_sizes (N,2) int64 as (width, height)`` -> ``labels (N,K) int64``,
  ``boxes (N,K,4)`` (absolute x1, y1, x2, y2 in the original image), ``scores (N,K)``; the RT-DETR
  post-processing (sigmoid scores, top-K over queries x classes).

The export uses the TorchScript-based exporter (``dynamo=False``), opset 17, with a dynamic batch
axis. Why not the ``torch.export``-based exporter (``dynamo=True``): it cannot write opset 17 (its
graphs are opset 18, and the down-conversion fails on the ``Split``/``Reduce*`` axes inputs), it
needs ``onnxscript``, and it takes over 10x longer (50 s instead of 4 s for the tiny MLLA
recipe on 2 CPU cores).

Dynamic batch, and why ``aten::unflatten`` gets its own symbolic: the TorchScript exporter keeps
the sizes seen while tracing as the *static* shape of every tensor whose shape ONNX shape inference
cannot derive, and then folds every later ``x.shape[0]`` of that tensor (or of anything computed
from it) into a constant. torch's own ``unflatten`` symbolic normalizes ``dim`` inside the graph
(``Add``/``Mod``/``Reshape`` on the rank) before slicing the input's shape, which shape inference
cannot follow: after the first ``unflatten`` (the MLLA layers' ``tokens_to_map`` and heads) the
export's batch size became a constant of the graph (the decoder's
``value.reshape(bs, len_v, heads, head_dim)`` then asked for ``{2, 8400, 8, 32}`` at batch 3), or
silently produced outputs of the export's batch size. :func:`_unflatten_symbolic` slices the
shape with constant bounds (``dim`` normalized at export time, where the rank is known), which
shape inference follows, so the batch stays symbolic. Graphs are checked at other batch sizes
than the export's (:func:`check_export`).

TensorRT: :data:`TENSORRT10_OPS` is the set of ONNX operators the TensorRT 10 ONNX parser
supports; :func:`onnx_op_counts` lists the operators of a file and :func:`ops_outside` those not
in a set (the export tool fails on any, and on any operator of a custom domain).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections import Counter
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

# ONNX operators that the TensorRT 10 ONNX parser supports: the rows marked "Y" of
# docs/operators.md in onnx/onnx-tensorrt at the "ONNX-TensorRT 10.1 GA release" (commit 96e7811;
# "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20").
TENSORRT10_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If
ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization
Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
""".split())
# The same table: TopK needs K < 3840.
TENSORRT10_MAX_TOPK = 3840


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


class RawExport(nn.Module):
    """``images (N,3,H,W)`` -> ``(pred_logits (N,Q,K), pred_boxes (N,Q,4) cxcywh in [0,1])``."""

    input_names = ["images"]
    output_names = ["pred_logits", "pred_boxes"]

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        out = self.model.forward_raw(images)
        return out["pred_logits"], out["pred_boxes"]

    @staticmethod
    def example_inputs(batch_size: int, size: Tuple[int, int], generator: torch.Generator) -> Tuple[torch.Tensor, ...]:
        """Random ``images`` (B, 3, H, W) in [0, 1]."""
        return (torch.rand(batch_size, 3, *size, generator=generator),)

    def tolerances(self, inputs: Sequence[torch.Tensor], atol: float) -> Dict[str, float]:
        """Max |onnx - torch| allowed per output for ``inputs``: ``atol`` for every output."""
        return {n: atol for n in self.output_names}


class TopKExport(nn.Module):
    """RT-DETR post-processing: sigmoid class scores, top-``num_top`` over all (query, class) pairs.

    forward(images (N,3,H,W), orig_target_sizes (N,2) as (w, h)) ->
    labels (N,num_top) int64, boxes (N,num_top,4) xyxy absolute, scores (N,num_top).
    """

    input_names = ["images", "orig_target_sizes"]
    output_names = ["labels", "boxes", "scores"]

    def __init__(self, model: nn.Module, num_top: int = 300):
        super().__init__()
        self.model = model
        self.num_top = num_top

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor):
        out = self.model.forward_raw(images)
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        num_classes = logits.shape[-1]
        boxes = box_cxcywh_to_xyxy(boxes) * orig_target_sizes.repeat(1, 2).unsqueeze(1).to(boxes.dtype)
        scores = torch.sigmoid(logits).flatten(1)
        scores, index = torch.topk(scores, self.num_top, dim=-1)
        labels = index % num_classes
        query = index // num_classes
        boxes = boxes.gather(dim=1, index=query.unsqueeze(-1).repeat(1, 1, boxes.shape[-1]))
        return labels, boxes, scores

    @staticmethod
    def example_inputs(batch_size: int, size: Tuple[int, int], generator: torch.Generator) -> Tuple[torch.Tensor, ...]:
        """Random ``images`` (B, 3, H, W) in [0, 1] and original sizes (w, h) in [64, 2000)."""
        images = torch.rand(batch_size, 3, *size, generator=generator)
        return images, torch.randint(64, 2000, (batch_size, 2), generator=generator)

    def tolerances(self, inputs: Sequence[torch.Tensor], atol: float) -> Dict[str, float]:
        """``atol`` for the scores (labels must match); pixel boxes: ``atol`` times the largest
        original side (the tolerance holds for normalized boxes)."""
        return {"labels": atol, "scores": atol, "boxes": atol * float(inputs[1].max())}


def _unflatten_symbolic(g, input, dim, unflattened_size):
    """``aten::unflatten`` as ``Reshape(x, Concat(shape[:dim], sizes, shape[dim+1:]))`` with constant
    slice bounds, so that ONNX shape inference keeps the other (dynamic) axes symbolic; see the
    module docstring. Falls back to torch's symbolic when the rank or ``dim`` is not known."""
    from torch.onnx import symbolic_helper, symbolic_opset13

    rank = symbolic_helper._get_tensor_rank(input)
    d = symbolic_helper._maybe_get_const(dim, "i")
    if rank is None or not isinstance(d, int):
        return symbolic_opset13.unflatten(g, input, dim, unflattened_size)
    d = d % rank

    def shape_slice(start: int, end: int):
        return g.op("Slice", g.op("Shape", input), g.op("Constant", value_t=torch.tensor([start])),
                    g.op("Constant", value_t=torch.tensor([end])))

    parts = ([shape_slice(0, d)] if d > 0 else []) + [unflattened_size] + (
        [shape_slice(d + 1, rank)] if d + 1 < rank else [])
    return g.op("Reshape", input, g.op("Concat", *parts, axis_i=0))


# Symbolics used instead of torch's during :func:`export` (registered only while it runs).
_EXPORT_SYMBOLICS: Dict[str, Callable] = {"aten::unflatten": _unflatten_symbolic}


@contextlib.contextmanager
def _export_symbolics(opset: int) -> Iterator[None]:
    for name, fn in _EXPORT_SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(name, fn, opset)
    try:
        yield
    finally:
        for name in _EXPORT_SYMBOLICS:
            torch.onnx.unregister_custom_op_symbolic(name, opset)


def export(module: nn.Module, inputs: Tuple[torch.Tensor, ...], path: str, input_names: Sequence[str],
           output_names: Sequence[str], opset: int = 17, dynamic_batch: bool = True) -> str:
    """Export ``module(*inputs)`` to ``path`` (batch axis 0 of every input/output dynamic) and run the
    ONNX checker. Returns the path.

    Trace at batch >= 2: at batch 1, size-1 broadcasting lets the tracer specialise some shapes."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {n: {0: "batch"} for n in list(input_names) + list(output_names)}
    module.eval()
    # Tracing fixes H, W (and Python ints derived from them): expected, since H, W are not dynamic.
    with torch.no_grad(), warnings.catch_warnings(), _export_symbolics(opset):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(
            module, inputs, path, input_names=list(input_names), output_names=list(output_names),
            dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(path))
    return path


def onnxruntime_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU ``InferenceSession`` of ``path`` (``threads`` intra-op threads; default
    onnxruntime's). The session holds the model: the file may be deleted afterwards."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnxruntime(path: str, feeds: Dict[str, np.ndarray], threads: Optional[int] = None) -> List[np.ndarray]:
    """Run an ONNX file with onnxruntime on CPU; returns the outputs in graph order."""
    return onnxruntime_session(path, threads).run(None, feeds)


def onnx_op_counts(path: str) -> Dict[str, int]:
    """``{op: count}`` of the graph's nodes (sub-graphs included), sorted by name; operators of a
    domain other than the default ONNX one are named ``domain::op``."""
    import onnx

    counts: Counter = Counter()

    def visit(graph):
        for node in graph.node:
            counts[f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(sub)

    visit(onnx.load(path, load_external_data=False).graph)
    return dict(sorted(counts.items()))


def ops_outside(op_counts: Dict[str, int], allowed=TENSORRT10_OPS) -> List[str]:
    """The operators of ``op_counts`` that are not in ``allowed`` (custom-domain ones never are)."""
    return sorted(op for op in op_counts if op not in allowed)


def compare(reference: Sequence[torch.Tensor], outputs: Sequence[np.ndarray], names: Sequence[str]) -> Dict[str, Dict]:
    """Max absolute difference between PyTorch and onnxruntime outputs, per output name."""
    result = {}
    for name, ref, out in zip(names, reference, outputs):
        ref_np = ref.detach().cpu().numpy()
        if ref_np.shape != out.shape:
            result[name] = {"shape_torch": list(ref_np.shape), "shape_onnx": list(out.shape), "max_abs_diff": float("inf")}
            continue
        diff = float(np.abs(ref_np.astype(np.float64) - out.astype(np.float64)).max()) if ref_np.size else 0.0
        result[name] = {"shape": list(ref_np.shape), "max_abs_diff": diff}
    return result


def check_export(wrapper: nn.Module, path: str, batch_sizes: Sequence[int], size: Tuple[int, int],
                 atol: float = 1e-4, seed: int = 0, threads: Optional[int] = None) -> Dict[str, object]:
    """Run the ONNX file ``path`` exported from ``wrapper`` (a :class:`RawExport` / :class:`TopKExport`)
    in onnxruntime on random inputs of each batch size, and compare with PyTorch.

    Outputs are compared per query after matching the queries one-to-one
    (:func:`compare_up_to_query_order`); a batch passes when the shapes agree and every output is
    within ``wrapper.tolerances(inputs, atol)``. Returns ``{"passed", "max_abs_diff": {output: max
    over batches}, "batches": {b: {"shapes", "max_abs_diff", "max_abs_diff_matched",
    "reordered_queries", "tolerance", "passed"}}}``.
    """
    g = torch.Generator().manual_seed(seed)
    session = onnxruntime_session(path, threads)
    names = wrapper.output_names
    device = next(wrapper.parameters()).device  # PyTorch runs where the model is; onnxruntime on the CPU
    result: Dict[str, object] = {"batches": {}, "max_abs_diff": {n: 0.0 for n in names}}
    for b in batch_sizes:
        inputs = wrapper.example_inputs(int(b), tuple(size), g)
        with torch.no_grad():
            ref = [r.cpu() for r in wrapper(*[x.to(device) for x in inputs])]
        outs = session.run(None, {n: x.numpy() for n, x in zip(wrapper.input_names, inputs)})
        diffs = compare(ref, outs, names)
        entry: Dict[str, object] = {"shapes": {k: v.get("shape", v.get("shape_onnx")) for k, v in diffs.items()},
                                    "max_abs_diff": {k: v["max_abs_diff"] for k, v in diffs.items()}}
        if all("shape" in v for v in diffs.values()):
            matched = compare_up_to_query_order(ref, outs, names)
            tol = wrapper.tolerances(inputs, atol)
            entry.update(max_abs_diff_matched=matched["max_abs_diff"], reordered_queries=matched["reordered_queries"],
                         tolerance=tol, passed=all(v <= tol[k] for k, v in matched["max_abs_diff"].items()))
            for k, v in matched["max_abs_diff"].items():
                result["max_abs_diff"][k] = max(result["max_abs_diff"][k], v)
        else:
            entry["passed"] = False
            for k in names:
                result["max_abs_diff"][k] = float("inf")
        result["batches"][int(b)] = entry
    result["passed"] = all(e["passed"] for e in result["batches"].values())
    return result


def _rows(tensors: Sequence[np.ndarray], b: int) -> np.ndarray:
    """Per-query rows of image ``b``: every (N, Q, ...) output flattened to (Q, -1) and concatenated."""
    return np.concatenate([np.asarray(t[b], dtype=np.float64).reshape(t.shape[1], -1) for t in tensors], axis=1)


def compare_up_to_query_order(reference: Sequence[torch.Tensor], outputs: Sequence[np.ndarray],
                              names: Sequence[str]) -> Dict[str, object]:
    """Compare per-query outputs (all of shape (N, Q, ...)) after matching the queries of each image
    one-to-one (Hungarian matching on the L1 distance of their concatenated outputs).

    Why: the decoder keeps the top-Q encoder proposals; proposals whose scores differ by less than
    the float32 rounding noise (common with random weights) may come out in another order from
    onnxruntime than from PyTorch. The detections are the same set, so a per-query comparison must
    not depend on their order. Returns ``{"max_abs_diff": {name: diff}, "reordered_queries": int}``.
    """
    from scipy.optimize import linear_sum_assignment

    refs = [r.detach().cpu().numpy() for r in reference]
    outs = [np.asarray(o) for o in outputs]
    if [r.shape for r in refs] != [o.shape for o in outs]:
        raise ValueError(f"shape mismatch: torch {[r.shape for r in refs]} vs onnx {[o.shape for o in outs]}")
    diffs = {n: 0.0 for n in names}
    moved = 0
    for b in range(refs[0].shape[0]):
        a, o = _rows(refs, b), _rows(outs, b)
        cost = np.abs(a[:, None, :] - o[None, :, :]).sum(-1)
        row, col = linear_sum_assignment(cost)
        moved += int((row != col).sum())
        for n, r, x in zip(names, refs, outs):
            if r[b].size:
                d = np.abs(r[b][row].astype(np.float64) - x[b][col].astype(np.float64)).max()
                diffs[n] = max(diffs[n], float(d))
    return {"max_abs_diff": diffs, "reordered_queries": moved}
