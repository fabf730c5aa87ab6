"""Official MLLA checkpoints -> our models: round trips, reports and clear errors."""
import runpy
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from parity_state import make_input, max_abs_diff

from mlla_rtdetr.checkpoint.mlla_converter import (
    CheckpointConversionError,
    convert_official_mlla,
    detect_mlla_format,
    infer_mlla_variant,
    is_official_mlla_checkpoint,
    load_official_mlla,
)
from mlla_rtdetr.modeling.backbone.mlla import MLLAClassifier
from mlla_rtdetr.modeling.layers import rope_tables
from mlla_utils import build_from_constructor, load_case, official_state, tiny_backbone

REPO = Path(__file__).resolve().parents[1]
TINY = dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))


def _official_classification_state(seed=0):
    """An official-style ImageNet state dict of the tiny architecture: trunk + norm + head + the
    derived RoPE buffers the official classification model stores."""
    torch.manual_seed(seed)
    cls = MLLAClassifier(num_classes=10, **TINY)
    state = OrderedDict(cls.state_dict())
    for i, stage in enumerate(cls.layers):
        side, c = 56 // 2 ** i, TINY["embed_dim"] * 2 ** i
        cos2, sin2 = rope_tables(side, side, c)
        for j in range(len(stage.blocks)):
            state[f"layers.{i}.blocks.{j}.attn.rope.rotations"] = torch.stack(
                [cos2[:, 0::2], sin2[:, 1::2]], -1).reshape(side, side, c // 2, 2)
    return cls, state


def test_detection_fixture_round_trip_matches_official_outputs():
    """Official detection backbone (mmdetection layout) -> ours reproduces the official maps."""
    manifest, expected = load_case("mlla_tiny")
    ckpt = {"meta": {"epoch": 12}, "state_dict": OrderedDict(
        [("backbone." + k, v) for k, v in official_state(manifest).items()]
        + [("neck.lateral_convs.0.conv.weight", torch.zeros(4, 32, 1, 1)), ("rpn_head.rpn_cls.bias", torch.zeros(3))])}
    model = build_from_constructor(expected).eval()
    report = load_official_mlla(model, ckpt)
    assert report.kind == "detection" and report.source == "state_dict" and report.ok
    assert len(report.used) == len(model.state_dict())
    assert report.ignored == {"detector neck/heads (not part of the backbone)":
                              ["neck.lateral_convs.0.conv.weight", "rpn_head.rpn_cls.bias"]}
    inp = expected["inputs"]["x320x320_seed1"]
    with torch.no_grad():
        out = list(model(make_input(inp["shape"], inp["seed"])).values())
    assert max(max_abs_diff(a, b) for a, b in zip(out, inp["outputs"])) <= 1e-4


@pytest.mark.parametrize("where", ["model", "state_dict_ema"])
def test_classification_checkpoint_into_backbone(where):
    cls, state = _official_classification_state()
    ckpt = {"model": state, "epoch": 299}
    if where == "state_dict_ema":
        ema = OrderedDict((k, v + 1.0 if v.is_floating_point() else v) for k, v in state.items())
        ckpt["state_dict_ema"] = ema
    backbone = tiny_backbone(out_features=("res3", "res4", "res5"))
    fresh_norms = {k: v.clone() for k, v in backbone.state_dict().items() if k.startswith("norm")}
    converted, report = convert_official_mlla(ckpt, model=backbone, prefix="backbone.",
                                              use_ema=where == "state_dict_ema")
    assert report.source == where and report.kind == "classification"
    assert set(report.ignored) == {"classification head (final norm + head)",
                                   "derived RoPE table (recomputed for each feature size)"}
    assert sorted(report.ignored["classification head (final norm + head)"]) == [
        "head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert len(report.ignored["derived RoPE table (recomputed for each feature size)"]) == 5
    assert report.kept_from_model == [f"norm{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    assert all(k.startswith("backbone.") for k in converted)
    src = ckpt[where]
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in converted.items()}, strict=True)
    for k, v in backbone.state_dict().items():
        if k.startswith("norm"):
            torch.testing.assert_close(v, fresh_norms[k])
        else:
            torch.testing.assert_close(v, src[k].to(v.dtype), msg=k)
    # Same trunk: the backbone's stride-32 tokens before norm3 equal the classifier's last stage.
    if where == "model":
        x = torch.rand(1, 3, 64, 64)
        cls.eval(), backbone.eval()
        with torch.no_grad():
            tokens, hw = cls.patch_embed(x)
            for st in cls.layers:
                out, _, down, dhw = st(tokens, hw)
                tokens, hw = (out, hw) if down is None else (down, dhw)
            res5 = backbone(x)["res5"]
        expect = backbone.norm3(tokens).transpose(1, 2).reshape(res5.shape)
        torch.testing.assert_close(res5, expect)


def test_classifier_round_trip_and_partial_backbone():
    cls, state = _official_classification_state()
    target = MLLAClassifier(num_classes=10, **TINY).eval()
    report = load_official_mlla(target, {"model": state})
    assert report.target == "classifier" and not report.kept_from_model
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(target(x), cls.eval()(x))
    shallow = tiny_backbone(out_features=("res2", "res3"))
    _, rep = convert_official_mlla({"model": state}, model=shallow)
    assert "stage not built by this model (beyond its deepest out_feature)" in rep.ignored


def test_errors_are_clear():
    cls, state = _official_classification_state()
    with pytest.raises(CheckpointConversionError, match="unexpected"):
        convert_official_mlla({"model": {**state, "layers.0.blocks.0.attn.extra": torch.zeros(2)}})
    bigger = tiny_backbone(embed_dim=64, num_heads=(2, 4, 8, 16))
    with pytest.raises(CheckpointConversionError, match="shape mismatch"):
        convert_official_mlla({"model": state}, model=bigger)
    deeper = tiny_backbone(depths=(1, 1, 3, 1))
    with pytest.raises(CheckpointConversionError, match="missing"):
        convert_official_mlla({"model": state}, model=deeper)
    with pytest.raises(CheckpointConversionError, match="state_dict_ema"):
        convert_official_mlla({"model": state}, use_ema=True)
    with pytest.raises(CheckpointConversionError, match="not an MLLA checkpoint"):
        convert_official_mlla({"model": {"conv1.weight": torch.zeros(1)}})
    manifest, _ = load_case("mlla_tiny")
    with pytest.raises(CheckpointConversionError, match="classification checkpoint"):
        convert_official_mlla(official_state(manifest), model=MLLAClassifier(**TINY))
    with pytest.raises(CheckpointConversionError, match="non-tensor"):
        convert_official_mlla({"model": {"patch_embed.x": 3}})


def test_format_and_variant_detection():
    manifest, _ = load_case("mlla_t")
    state = official_state(manifest)
    assert detect_mlla_format(state) == "backbone"
    assert infer_mlla_variant(state) == "mlla_t"
    assert detect_mlla_format({"backbone." + k: v for k, v in state.items()}) == "detection"
    _, cls_state = _official_classification_state()
    assert detect_mlla_format(cls_state) == "classification"
    assert infer_mlla_variant(cls_state) is None  # the tiny test architecture is no published variant


def test_cli_converts_and_reports(tmp_path, capsys):
    tool = REPO / "tools" / "convert_mlla_checkpoint.py"
    cli = runpy.run_path(str(tool), run_name="convert_mlla_checkpoint")
    manifest, _ = load_case("mlla_t_cls")
    state = official_state(manifest)
    src = tmp_path / "MLLA_T.pth"
    torch.save({"model": state, "state_dict_ema": state, "epoch": 1}, src)
    dst = tmp_path / "out" / "mlla_t_backbone.pth"
    args = ["--input", str(src), "--output", str(dst), "--ema"]
    assert cli["main"](args) == 0
    out = capsys.readouterr().out
    assert "variant: mlla_t" in out and "classification head" in out and "state_dict_ema" in out
    saved = torch.load(dst, weights_only=True)
    assert saved["matching_heuristics"] is False
    assert all(k.startswith("backbone.") for k in saved["model"])
    assert "backbone.norm0.weight" not in saved["model"]  # default outputs res3..res5
    torch.testing.assert_close(saved["model"]["backbone.layers.2.blocks.0.attn.qk.weight"],
                               state["layers.2.blocks.0.attn.qk.weight"])
    assert cli["main"](args[:-1] + ["--output", str(tmp_path / "bad.pth"), "--variant", "mlla_s"]) == 1
    err = capsys.readouterr().err
    assert "looks like mlla_t" in err and "missing" in err and not (tmp_path / "bad.pth").exists()
    help_ = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True, cwd=REPO,
                           timeout=300)
    assert help_.returncode == 0 and "--ema" in help_.stdout


def test_official_checkpoint_into_a_detector_backbone():
    """The engine's init_checkpoint path: an official MLLA checkpoint is recognised and loaded into
    a detector's MLLA backbone only; a detector state dict is not mistaken for one."""
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(REPO / "projects/mlla_rtdetr/configs/mlla_rtdetr_tiny_synthetic.py"))
    detector = instantiate(cfg.model)
    torch.manual_seed(1)
    cls = MLLAClassifier(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), num_classes=3)
    ckpt = {"model": cls.state_dict()}
    assert is_official_mlla_checkpoint(ckpt)
    assert not is_official_mlla_checkpoint({"model": detector.state_dict()})
    encoder_before = {k: v.clone() for k, v in detector.encoder.state_dict().items()}
    report = load_official_mlla(detector, ckpt)
    assert report.ok and any("detector's backbone" in n for n in report.notes)
    torch.testing.assert_close(detector.backbone.layers[2].blocks[0].attn.qk.weight,
                               cls.layers[2].blocks[0].attn.qk.weight)
    for k, v in detector.encoder.state_dict().items():
        torch.testing.assert_close(v, encoder_before[k])
    with pytest.raises(CheckpointConversionError, match="MLLABackbone"):
        load_official_mlla(torch.nn.Linear(2, 2), ckpt)
