"""ONNX export helpers and tools/export_onnx.py: ONNX outputs equal PyTorch's within 1e-4."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mlla_rtdetr.utils.onnx_utils import (
    RawExport,
    TopKExport,
    compare,
    compare_up_to_query_order,
    export,
    run_onnxruntime,
)
from tools_utils import MLLA_TINY_CONFIG, REPO_ROOT, TINY_CONFIG, load_tool, spread_weights_

pytest.importorskip("onnxruntime")


class SmallDetector(nn.Module):
    """conv -> tokens -> class / box heads; forward_raw like the RT-DETR meta-architecture."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.cls = nn.Linear(8, num_classes)
        self.box = nn.Linear(8, 4)

    def forward_raw(self, images):
        t = self.conv(images).flatten(2).transpose(1, 2)
        return {"pred_logits": self.cls(t), "pred_boxes": self.box(t).sigmoid()}


def test_raw_and_topk_export_match_torch_with_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    model = SmallDetector().eval()
    raw = RawExport(model)
    path = export(raw, (torch.rand(1, 3, 32, 32),), str(tmp_path / "raw.onnx"), raw.input_names, raw.output_names)
    x = torch.rand(3, 3, 32, 32)  # another batch size than at export
    outs = run_onnxruntime(path, {"images": x.numpy()})
    with torch.no_grad():
        ref = raw(x)
    diffs = compare(ref, outs, raw.output_names)
    assert diffs["pred_logits"]["shape"] == [3, 64, 3] and diffs["pred_boxes"]["shape"] == [3, 64, 4]
    assert max(d["max_abs_diff"] for d in diffs.values()) <= 1e-4

    topk = TopKExport(model, num_top=10)
    sizes = torch.tensor([[640, 480], [100, 200]])
    path = export(topk, (x[:2], sizes), str(tmp_path / "topk.onnx"), topk.input_names, topk.output_names)
    labels, boxes, scores = run_onnxruntime(path, {"images": x[:2].numpy(), "orig_target_sizes": sizes.numpy()})
    with torch.no_grad():
        ref_labels, ref_boxes, ref_scores = topk(x[:2], sizes)
    assert labels.dtype == np.int64 and labels.shape == (2, 10) and boxes.shape == (2, 10, 4)
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels, ref_labels.numpy())
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-3)  # pixels of a 640 px image
    # Scores are sorted and the boxes lie inside each image.
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.all(boxes[1, :, 0::2] <= 100 + 1e-3) and np.all(boxes[1, :, 1::2] <= 200 + 1e-3)


def test_compare_up_to_query_order_ignores_permutations():
    ref = (torch.arange(12.0).reshape(1, 4, 3), torch.arange(8.0).reshape(1, 4, 2))
    perm = [2, 0, 3, 1]
    outs = [ref[0][:, perm].numpy(), ref[1][:, perm].numpy() + 1e-6]
    res = compare_up_to_query_order(ref, outs, ["a", "b"])
    assert res["reordered_queries"] == 4
    assert res["max_abs_diff"]["a"] == 0 and res["max_abs_diff"]["b"] == pytest.approx(1e-6, abs=1e-7)
    assert compare(ref, outs, ["a", "b"])["a"]["max_abs_diff"] > 1  # strict order comparison sees it


def test_export_tool_readme_command(tmp_path):
    """The README's export command, run as a user runs it, on the tiny MLLA recipe (MLLA backbone and
    MLLA encoder): top-K head, checked at batch 1 and 3 after tracing at batch 2."""
    from detectron2.config import instantiate

    from mlla_rtdetr.engine import load_config

    cfg = load_config(MLLA_TINY_CONFIG)
    model = spread_weights_(instantiate(cfg.model), seed=0)
    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    onnx_path, report = tmp_path / "model.onnx", tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "export_onnx.py"), "--config-file", MLLA_TINY_CONFIG,
         "--checkpoint", str(ckpt), "--output", str(onnx_path), "--input-size", "96", "--head", "topk",
         "--num-top", "20", "--report", str(report)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert onnx_path.is_file()
    saved = json.loads(report.read_text())
    assert saved["passed"] and saved["opset"] == 17 and saved["ops_outside_op_set"] == []
    assert {"GridSample", "TopK", "Einsum", "Conv"} <= set(saved["ops"])
    assert "operator check (tensorrt10): ok" in proc.stdout and "ONNX operators" in proc.stdout
    for b in (1, 3):
        entry = saved["batches"][str(b)]
        assert entry["shapes"] == {"labels": [b, 20], "boxes": [b, 20, 4], "scores": [b, 20]}
        assert entry["passed"] and entry["max_abs_diff_matched"]["scores"] <= 1e-4
    # With well-spread weights no proposals tie: the outputs match query by query.
    assert all(saved["batches"][b]["reordered_queries"] == 0 for b in ("1", "3"))


def test_export_tool_fails_on_ops_outside_the_set(tmp_path, monkeypatch):
    """An operator outside the TensorRT set makes the tool exit with status 1 (after writing the report)."""
    tool = load_tool("export_onnx")
    monkeypatch.setitem(tool.OP_SETS, "tensorrt10", frozenset({"Conv"}))
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exc:
        tool.main(["--config-file", TINY_CONFIG, "--checkpoint", "", "--output", str(tmp_path / "m.onnx"),
                   "--input-size", "64", "--skip-check", "--report", str(report)])
    assert exc.value.code == 1
    saved = json.loads(report.read_text())
    assert saved["passed"] is False and "GridSample" in saved["ops_outside_op_set"]
