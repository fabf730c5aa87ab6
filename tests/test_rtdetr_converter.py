"""Official RT-DETR checkpoint converter: fixture manifests, containers, corruption, round trip, CLI."""
import json
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from detectron2.config import instantiate

from mlla_rtdetr.checkpoint.rtdetr_converter import (
    CheckpointConversionError,
    convert_official_rtdetr,
    detect_rtdetr_version,
    export_official_rtdetr,
    is_official_rtdetr_checkpoint,
    load_official_rtdetr,
)
from mlla_rtdetr.config import config_path
from mlla_rtdetr.engine import load_config
from parity_state import load_manifest, make_state

# case -> (model config, official version)
CASES = {
    "rtdetr_v1_r18vd": ("models/rtdetr_r18vd.py", "v1"),
    "rtdetrv2_r18vd": ("models/rtdetr_r18vd.py", "v2"),
    "rtdetrv2_r50vd": ("models/rtdetr_r50vd.py", "v2"),
}


def _model(cfg_name, version="v2"):
    cfg = load_config(cfg_name)
    cfg.model.decoder.version = version
    return instantiate(cfg.model)


def _official_state(parity_dir, case):
    path = parity_dir / "fixtures" / f"{case}.manifest.json"
    return make_state(load_manifest(path), json.loads(path.read_text())["state_seed"]), load_manifest(path)


@pytest.fixture(scope="module")
def r18_model():
    return _model("models/rtdetr_r18vd.py")


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("rtdetr_tiny_synthetic.py")
    return instantiate(cfg.model)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixture_states_convert_and_load_strict(parity_dir, case):
    cfg_name, version = CASES[case]
    model = _model(cfg_name, version)
    official, rows = _official_state(parity_dir, case)
    state, report = convert_official_rtdetr(official, version="auto", target=model)
    assert report.ok and report.version == version and report.source == "raw"
    model.load_state_dict(state, strict=True)
    # every source tensor used exactly once, every target key filled
    assert report.num_tensors == len(official)
    assert len(state) == len(model.state_dict())
    renamed = dict(report.renamed)
    used = [renamed.get(k, k) for k in official]
    assert len(set(used)) == len(used) == len(official)
    assert set(used) | set(report.kept_from_target) == set(model.state_dict())
    for src, dst in [(k, renamed.get(k, k)) for k in list(official)[::37]]:
        assert torch.equal(model.state_dict()[dst], official[src]), src
    if version == "v1":
        assert ("encoder.input_proj.0.0.weight", "encoder.input_proj.0.conv.weight") in report.renamed
        assert ("decoder.enc_output.1.bias", "decoder.enc_output.norm.bias") in report.renamed
        assert len(report.renamed) == 22


def test_derived_v2_buffers_are_dropped_not_loaded(r18_model, parity_dir):
    official, rows = _official_state(parity_dir, "rtdetrv2_r18vd")
    official = OrderedDict(official)
    official["decoder.anchors"] = torch.zeros(1, 8400, 4)  # garbage: must not be used
    official["decoder.valid_mask"] = torch.zeros(1, 8400, 1, dtype=torch.bool)
    official["decoder.decoder.layers.0.cross_attn.num_points_scale"] = torch.zeros(12)
    state, report = convert_official_rtdetr(official, target=r18_model)
    assert sorted(report.dropped_derived) == sorted(
        ["decoder.anchors", "decoder.valid_mask", "decoder.decoder.layers.0.cross_attn.num_points_scale"]
    )
    assert not any(k.endswith(("anchors", "valid_mask")) for k in state if k not in r18_model.state_dict())


def test_checkpoint_containers_prefer_ema(tiny):
    ours = tiny.state_dict()
    official = export_official_rtdetr(ours, "v1")
    other = OrderedDict((k, torch.zeros_like(v)) for k, v in official.items())
    for ckpt, where in [
        (official, "raw"),
        ({"model": official, "optimizer": {}}, "model"),
        ({"model": other, "ema": {"module": official, "updates": 10}}, "ema.module"),
    ]:
        state, report = convert_official_rtdetr(ckpt, target=tiny)
        assert report.source == where and report.version == "v1"
        for k, v in ours.items():
            assert torch.equal(state[k], v), k
    assert "EMA" in str(convert_official_rtdetr({"ema": {"module": official}}, target=tiny)[1])


def test_round_trip_v1_and_v2(tiny):
    ours = tiny.state_dict()
    for version in ("v1", "v2"):
        official = export_official_rtdetr(ours, version)
        assert detect_rtdetr_version(official) == version
        back, report = convert_official_rtdetr(official, version=version, target=tiny)
        assert list(back) == list(ours)
        assert all(torch.equal(back[k], ours[k]) for k in ours)
        assert export_official_rtdetr(back, version).keys() == official.keys()


def test_corrupted_checkpoints_name_the_keys(tiny):
    official = export_official_rtdetr(tiny.state_dict(), "v2")

    missing = OrderedDict(official)
    del missing["decoder.enc_score_head.bias"]
    with pytest.raises(CheckpointConversionError, match=r"missing in checkpoint\s+decoder\.enc_score_head\.bias"):
        convert_official_rtdetr(missing, target=tiny)

    extra = OrderedDict(official)
    extra["decoder.extra_head.weight"] = torch.zeros(3)
    extra["head.fc.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointConversionError) as err:
        convert_official_rtdetr(extra, target=tiny)
    assert "decoder.extra_head.weight" in str(err.value) and "head.fc.weight" in str(err.value)
    # keys outside backbone/encoder/decoder are refused even without a target
    with pytest.raises(CheckpointConversionError, match="head.fc.weight"):
        convert_official_rtdetr(extra)

    wrong = OrderedDict(official)
    wrong["decoder.enc_score_head.weight"] = torch.zeros(80, 64)
    with pytest.raises(CheckpointConversionError, match=r"shape mismatch\s+decoder\.enc_score_head\.weight\s+\(80, 64\)\s+\(5, 64\)"):
        convert_official_rtdetr(wrong, target=tiny)

    with pytest.raises(CheckpointConversionError, match="v2"):
        convert_official_rtdetr(official, version="v1")
    mixed = OrderedDict(official)
    mixed["encoder.input_proj.0.0.weight"] = mixed.pop("encoder.input_proj.0.conv.weight")
    with pytest.raises(CheckpointConversionError, match="mixes"):
        convert_official_rtdetr(mixed)
    with pytest.raises(CheckpointConversionError, match="non-tensor"):
        convert_official_rtdetr({"model": {"backbone.x": 1}})


def test_load_official_and_detection(tmp_path, tiny):
    official = export_official_rtdetr(tiny.state_dict(), "v1")
    path = tmp_path / "official.pth"
    torch.save({"ema": {"module": official, "updates": 5}, "last_epoch": 3}, path)
    assert is_official_rtdetr_checkpoint(path)
    assert not is_official_rtdetr_checkpoint({"model": tiny.state_dict(), "iteration": 10})
    assert not is_official_rtdetr_checkpoint({"model": {"layers.0.weight": torch.zeros(1)}})

    fresh = instantiate(load_config("rtdetr_tiny_synthetic.py").model)
    report = load_official_rtdetr(fresh, path)
    assert report.ok and report.source == "ema.module"
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in tiny.state_dict().items())


def test_cli_converts_and_refuses(tmp_path, tiny, repo_root):
    official = export_official_rtdetr(tiny.state_dict(), "v1")
    src, dst = tmp_path / "in.pth", tmp_path / "out" / "converted.pth"
    torch.save({"model": official}, src)
    tool = str(repo_root / "tools" / "convert_rtdetr_checkpoint.py")
    help_out = subprocess.run([sys.executable, tool, "--help"], capture_output=True, text=True, cwd=repo_root)
    assert help_out.returncode == 0 and "--version" in help_out.stdout

    cfg = str(config_path("rtdetr_tiny_synthetic.py"))
    res = subprocess.run([sys.executable, tool, "--input", str(src), "--output", str(dst), "--config", cfg],
                         capture_output=True, text=True, cwd=repo_root)
    assert res.returncode == 0, res.stderr
    out = torch.load(dst, weights_only=True)
    assert set(out) == {"model"}
    assert all(torch.equal(out["model"][k], v) for k, v in tiny.state_dict().items())

    del official["decoder.enc_score_head.bias"]
    torch.save(official, src)
    res = subprocess.run([sys.executable, tool, "--input", str(src), "--output", str(dst), "--config", cfg],
                         capture_output=True, text=True, cwd=repo_root)
    assert res.returncode == 2 and "decoder.enc_score_head.bias" in res.stderr
