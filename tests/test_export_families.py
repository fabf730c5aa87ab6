"""Every model family exports to ONNX with a dynamic batch and matches PyTorch in onnxruntime.

One small config per family (the tiny recipes, changed by overrides to the family's parts): each is
exported twice, the raw head at 64 px and the top-K head at 96 px, both traced at batch 2, and run
at batch 1 and 3; every output must be within 1e-4 of PyTorch (queries matched one-to-one), and
every ONNX operator must be one that the TensorRT 10 ONNX parser supports.

Add a family by adding an :class:`ExportFamily` to ``EXPORT_FAMILIES``.
"""
import dataclasses
from typing import Tuple

import pytest
import torch
from torch import nn

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.utils.onnx_utils import (
    TENSORRT10_OPS,
    RawExport,
    TopKExport,
    check_export,
    export,
    onnx_op_counts,
    ops_outside,
)
from tools_utils import REPO_ROOT, spread_weights_

pytest.importorskip("onnxruntime")

CONFIGS = REPO_ROOT / "projects" / "mlla_rtdetr" / "configs"


@dataclasses.dataclass(frozen=True)
class ExportFamily:
    """A model family at a small size: a recipe under ``projects/mlla_rtdetr/configs`` plus
    ``key=value`` overrides that select the family's parts."""

    name: str
    config: str
    overrides: Tuple[str, ...] = ()


EXPORT_FAMILIES = [
    ExportFamily("resnet_vd_v2", "rtdetr_tiny_synthetic.py"),
    ExportFamily("resnet_vd_v1", "rtdetr_tiny_synthetic.py", ("model.decoder.version=v1",)),
    ExportFamily("mlla_backbone_aifi", "mlla_rtdetr_tiny_synthetic.py",
                 ("model.encoder.attention=softmax", "model.encoder.attention_cfg=[{}]")),
    ExportFamily("resnet_vd_mlla_encoder_s4s5", "rtdetr_tiny_synthetic.py",
                 ("model.encoder.attention=mlla", "model.encoder.use_encoder_idx=[1,2]")),
    ExportFamily("mlla_backbone_mlla_encoder_s5", "mlla_rtdetr_tiny_synthetic.py"),
]

EXPORT_BATCH = 2
CHECK_BATCHES = (1, 3)
HEADS = (("raw", 64), ("topk", 96))  # (head, input size): two sizes over the two exports


def _model(family: ExportFamily) -> nn.Module:
    cfg = load_config(str(CONFIGS / family.config), list(family.overrides))
    model = build_model(cfg, checkpoint="", device="cpu")
    # Well-spread weights: proposal scores differ clearly, so outputs are well conditioned.
    return spread_weights_(model, seed=0).eval().deploy()


@pytest.mark.parametrize("family", EXPORT_FAMILIES, ids=lambda f: f.name)
def test_family_exports_with_dynamic_batch(family, tmp_path):
    torch.manual_seed(0)
    model = _model(family)
    for head, size in HEADS:
        wrapper = RawExport(model) if head == "raw" else TopKExport(model, num_top=10)
        path = str(tmp_path / f"{family.name}_{head}.onnx")
        export(wrapper, wrapper.example_inputs(EXPORT_BATCH, (size, size), torch.Generator().manual_seed(1)),
               path, wrapper.input_names, wrapper.output_names, opset=17)
        ops = onnx_op_counts(path)
        assert ops_outside(ops, TENSORRT10_OPS) == [], (head, ops)
        res = check_export(wrapper, path, CHECK_BATCHES, (size, size), atol=1e-4)
        for b in CHECK_BATCHES:
            entry = res["batches"][b]
            assert all(shape[0] == b for shape in entry["shapes"].values()), (head, b, entry["shapes"])
        assert res["passed"], (head, res)
        assert max(res["max_abs_diff"].values()) <= 1e-4 * (1 if head == "raw" else 2000)


class _Unflatten(nn.Module):
    """(B, 16, 8) -> unflatten(1, (4, 4)) -> reshape by the traced batch size."""

    input_names, output_names = ["x"], ["y"]

    def forward(self, x):
        y = x.unflatten(1, (4, 4))
        return y.reshape(y.shape[0], -1) * 2


def test_unflatten_keeps_the_batch_axis_dynamic(tmp_path):
    # torch's own unflatten symbolic makes shape inference fall back to the traced sizes; the
    # later y.shape[0] then becomes the constant 2 and batch 3 comes out with 2 rows.
    from mlla_rtdetr.utils.onnx_utils import run_onnxruntime

    m = _Unflatten()
    path = export(m, (torch.rand(2, 16, 8),), str(tmp_path / "u.onnx"), m.input_names, m.output_names)
    x = torch.rand(3, 16, 8)
    (out,) = run_onnxruntime(path, {"x": x.numpy()})
    assert out.shape == (3, 128)
    torch.testing.assert_close(torch.from_numpy(out), m(x))


def test_op_listing_and_tensorrt_set(tmp_path):
    m = _Unflatten()
    path = export(m, (torch.rand(2, 16, 8),), str(tmp_path / "u.onnx"), m.input_names, m.output_names)
    ops = onnx_op_counts(path)
    assert ops.get("Reshape", 0) >= 1 and ops.get("Mul", 0) == 1 and list(ops) == sorted(ops)
    assert ops_outside(ops) == []
    assert ops_outside({"Reshape": 1, "Unique": 2, "com.microsoft::FusedConv": 1}) == [
        "Unique", "com.microsoft::FusedConv"]
    # The published TensorRT 10 support matrix lists these as supported / unsupported.
    assert {"GridSample", "TopK", "LayerNormalization", "Einsum", "Mod", "Elu"} <= TENSORRT10_OPS
    assert not {"Unique", "SequenceAt", "ConcatFromSequence"} & TENSORRT10_OPS
