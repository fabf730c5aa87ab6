"""ONNX export of detectors and checks with onnxruntime.

Two export heads (``RawExport`` / ``TopKExport``):

* ``raw``:  ``images (N,3,H,W) in [0,1]`` -> ``pred_logits (N,Q,K)``, ``pred_boxes (N,Q,4)``
  (normalized cx, cy, w, h); the same tensors as ``model.forward_raw``.
* ``topk``: ``images``, ``orig_target_sizes (N,2) int64 as (width, height)`` -> ``labels (N,K) int64``,
  ``boxes (N,K,4)`` (absolute x1, y1, x2, y2 in the original image), ``scores (N,K)``; the RT-DETR
  post-processing (sigmoid scores, top-K over queries x classes).

The export uses the TorchScript-based exporter (``dynamo=False``), opset 17, with a dynamic batch axis.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn


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


def export(module: nn.Module, inputs: Tuple[torch.Tensor, ...], path: str, input_names: Sequence[str],
           output_names: Sequence[str], opset: int = 17, dynamic_batch: bool = True) -> str:
    """Export ``module(*inputs)`` to ``path`` (batch axis 0 of every input/output dynamic) and run the
    ONNX checker. Returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {n: {0: "batch"} for n in list(input_names) + list(output_names)}
    module.eval()
    # Tracing fixes H, W (and Python ints derived from them): expected, since H, W are not dynamic.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module, inputs, path, input_names=list(input_names), output_names=list(output_names),
            dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(path))
    return path


def run_onnxruntime(path: str, feeds: Dict[str, np.ndarray], threads: Optional[int] = None) -> List[np.ndarray]:
    """Run an ONNX file with onnxruntime on CPU; returns the outputs in graph order."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


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
