"""HGNetv2 L / X / H (RT-DETR-L / X, RT-DETRv2-L / X / H): sizes, official freeze semantics, the
official checkpoint formats (detector and ImageNet backbone), and the recipes' parameter groups.

Output parity with the official model is tested on the ``rtdetrv2_hgnetv2_l`` fixture in
``test_rtdetr_parity.py``; parameter counts and GFLOPs of the full models in ``test_rtdetr_configs.py``.
"""
import json
import re
from collections import OrderedDict

import pytest
import torch
from detectron2.config import instantiate

from mlla_rtdetr.checkpoint.rtdetr_converter import (
    CheckpointConversionError,
    convert_official_backbone,
    convert_official_rtdetr,
    detect_official_backbone,
    export_official_rtdetr,
    hgnetv2_key_from_official,
    hgnetv2_key_to_official,
    load_official_backbone,
)
from mlla_rtdetr.engine import load_config
from mlla_rtdetr.engine.init_checkpoint import load_init_checkpoint
from mlla_rtdetr.errors import ConfigError
from mlla_rtdetr.modeling import HGNetv2
from parity_state import load_manifest, make_state

# official backbone parameters (FrozenBN: conv weights only) and timm's count with trainable BN
BACKBONE_PARAMS = {"L": (13_507_680, 13_553_376), "X": (33_231_840, 33_325_760), "H": (68_847_056, 69_013_472)}


@pytest.fixture(scope="module")
def manifest(parity_dir):
    path = parity_dir / "fixtures" / "rtdetrv2_hgnetv2_l.manifest.json"
    return json.loads(path.read_text()), load_manifest(str(path))


@pytest.fixture(scope="module")
def official_state(manifest):
    info, rows = manifest
    return make_state(rows, seed=info["state_seed"])


@pytest.fixture(scope="module")
def detector_l():
    return instantiate(load_config("models/rtdetr_hgnetv2_l.py").model)


def _imagenet_state(official_state):
    """The official ImageNet file holds the backbone's own keys (official HGNetv2.load_state_dict)."""
    return OrderedDict((k[len("backbone."):], v) for k, v in official_state.items() if k.startswith("backbone."))


@pytest.mark.parametrize("name", ["L", "X", "H"])
def test_backbone_sizes_and_why_timm_counts_more(name):
    official, timm_count = BACKBONE_PARAMS[name]
    frozen = HGNetv2(name, freeze_at=0, freeze_norm=True)
    assert sum(p.numel() for p in frozen.parameters()) == official
    trainable_bn = HGNetv2(name)  # BatchNorm2d affine values are parameters until frozen
    bn_affine = sum(m.weight.numel() + m.bias.numel() for m in trainable_bn.modules()
                    if isinstance(m, torch.nn.BatchNorm2d))
    assert sum(p.numel() for p in trainable_bn.parameters()) == timm_count == official + bn_affine
    shapes = frozen.output_shape()
    assert [(k, s.channels, s.stride) for k, s in shapes.items()] == [
        ("res3", 512, 8), ("res4", 1024, 16), ("res5", 2048, 32)]


def test_official_freeze_semantics():
    def frozen_roots(model):
        return sorted({re.match(r"body\.(stem|stages_\d)", n).group(1)
                       for n, p in model.named_parameters() if not p.requires_grad})

    assert frozen_roots(HGNetv2("L", freeze_at=-1)) == []
    assert frozen_roots(HGNetv2("L", freeze_at=0)) == ["stem"]
    assert frozen_roots(HGNetv2("L", freeze_at=2)) == ["stages_0", "stages_1", "stem"]
    model = HGNetv2("L", freeze_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(not n.endswith(("bn.weight", "bn.bias")) for n, _ in model.named_parameters())
    with pytest.raises(ConfigError, match="one of"):
        HGNetv2("M")


def test_use_lab_adds_learnable_affine_after_activations():
    plain, lab = HGNetv2("L"), HGNetv2("L", use_lab=True)
    lab_keys = [k for k in lab.state_dict() if ".lab." in k]
    assert lab_keys and not any(".lab." in k for k in plain.state_dict())
    # official ConvBNAct: lab only where there is an activation (not on the 1x1 conv of light blocks
    # nor on the depthwise downsampling)
    assert not any(re.search(r"(downsample|conv1)\.lab\.", k) for k in lab_keys)
    official = hgnetv2_key_to_official(lab_keys[0])
    assert official.startswith("stem.stem1.lab.") and hgnetv2_key_from_official(official) == lab_keys[0]


def test_key_mapping_covers_the_official_layout(manifest):
    _, rows = manifest
    official = [r["key"][len("backbone."):] for r in rows if r["key"].startswith("backbone.")]
    ours = set(HGNetv2("L", freeze_norm=True).state_dict())
    mapped = [hgnetv2_key_from_official(k) for k in official]
    assert set(mapped) == ours and len(mapped) == len(ours)
    assert [hgnetv2_key_to_official(k) for k in mapped] == official
    assert hgnetv2_key_from_official("stem.stem2a.conv.1.weight") == "body.stem.stem2a.conv.weight"
    assert hgnetv2_key_from_official("stages.2.blocks.1.aggregation_excitation_conv.bn.running_var") == (
        "body.stages_2.blocks.1.aggregation.1.bn.running_var")


def test_detector_checkpoint_round_trip(official_state, detector_l):
    model = detector_l
    converted, report = convert_official_rtdetr({"ema": {"module": official_state}}, target=model)
    assert report.ok and report.source == "ema.module" and any("HGNetv2" in n for n in report.notes)
    model.load_state_dict(converted, strict=True)
    exported = export_official_rtdetr(model.state_dict(), "v2")
    assert set(exported) == set(official_state)  # official names (official order: backbone, decoder, encoder)
    assert [k for k in exported if k.startswith("backbone.")] == [k for k in official_state if k.startswith("backbone.")]
    assert all(torch.equal(exported[k], v) for k, v in official_state.items())


def test_imagenet_weights_detected_and_loaded_into_the_detector(tmp_path, official_state, detector_l):
    state = _imagenet_state(official_state)
    assert detect_official_backbone(state) == "hgnetv2"
    assert detect_official_backbone(official_state) is None  # a detector, not a backbone file
    # files saved from a BatchNorm model carry counters; FrozenBN targets drop them
    with_counters = OrderedDict(state)
    with_counters["stem.stem1.bn.num_batches_tracked"] = torch.tensor(7)
    path = tmp_path / "PPHGNetV2_L_ssld_pretrained_from_paddle.pth"
    torch.save(with_counters, path)

    model = detector_l
    with torch.no_grad():
        for v in model.backbone.state_dict().values():
            v.zero_()
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    report = load_init_checkpoint(model, str(path))
    assert report["format"] == "official hgnetv2 ImageNet backbone"
    ours = model.backbone.state_dict()
    for k, v in state.items():
        assert torch.equal(ours[hgnetv2_key_from_official(k)], v), k
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in encoder_before.items())

    prefixed, rep = convert_official_backbone(state, prefix="backbone.", target=model.backbone)
    assert rep.version == "hgnetv2" and all(k.startswith("backbone.body.") for k in prefixed)


def test_imagenet_weights_of_another_size_are_refused(official_state):
    x_backbone = HGNetv2("X", freeze_norm=True)
    with pytest.raises(CheckpointConversionError, match="shape mismatch"):
        load_official_backbone(x_backbone, _imagenet_state(official_state))


def test_recipes_official_parameter_groups(detector_l):
    names = {"rtdetrv2_hgnetv2_l_6x_coco.py": 5e-6, "rtdetrv2_hgnetv2_x_6x_coco.py": 1e-6,
             "rtdetrv2_hgnetv2_h_6x_coco.py": 5e-6, "rtdetr_hgnetv2_l_6x_coco.py": 5e-6,
             "rtdetr_hgnetv2_x_6x_coco.py": 1e-6}
    for name, backbone_lr in names.items():
        cfg = load_config(name)
        # the groups depend on parameter names only: L's model serves every size
        cfg.optimizer.params.model = detector_l
        groups = {n: (g["lr"], g["weight_decay"]) for g in instantiate(cfg.optimizer.params) for n in g["names"]}
        assert groups["backbone.body.stages_3.blocks.0.layers.0.conv1.conv.weight"] == pytest.approx(
            (backbone_lr, 1e-4)), name
        assert not any(n.startswith("backbone.body.stem.") for n in groups), name  # freeze_at=0
        v2 = name.startswith("rtdetrv2")
        assert groups["encoder.input_proj.0.norm.weight"] == pytest.approx((1e-4, 0.0 if v2 else 1e-4)), name
        assert groups["decoder.dec_score_head.0.weight"] == pytest.approx((1e-4, 1e-4)), name
        assert cfg.train.epochs == 72 and cfg.dataloader.train.stop_aug_epoch == (71 if v2 else None), name
        assert cfg.model.decoder.version == ("v2" if v2 else "v1"), name
        assert cfg.model.backbone.name == name.split("_")[2].upper(), name
        assert cfg.train.output_dir.endswith(name[:-3])
    x = load_config("models/rtdetr_hgnetv2_x.py").model
    h = load_config("models/rtdetr_hgnetv2_h.py").model
    assert (x.encoder.hidden_dim, x.encoder.dim_feedforward, x.encoder.num_encoder_layers) == (384, 2048, 1)
    assert (h.encoder.hidden_dim, h.encoder.dim_feedforward, h.encoder.num_encoder_layers) == (512, 2048, 2)
    assert list(x.decoder.feat_channels) == [384] * 3 and list(h.decoder.feat_channels) == [512] * 3
    assert list(x.encoder.in_channels) == [512, 1024, 2048]  # resolved from the backbone


@pytest.mark.slow
def test_recipe_trains_from_the_official_imagenet_backbone(tmp_path, repo_root, official_state):
    """The model-zoo README's training command of RT-DETRv2-HGNetv2-L: the recipe with
    ``train.init_checkpoint`` = the official ImageNet file (here: official-format random weights,
    shrunk to the embedded data by overrides). The frozen stem and every FrozenBatchNorm keep the
    file's values; the stages train."""
    import subprocess

    from data_utils import synthetic_val_subset
    from tools_utils import embedded_data_overrides, zoo_readme_command

    state = _imagenet_state(official_state)
    weights = tmp_path / "PPHGNetV2_L_ssld_pretrained_from_paddle.pth"
    torch.save(state, weights)
    json_file, image_root = synthetic_val_subset(tmp_path, 2)
    out = tmp_path / "out"
    cmd = zoo_readme_command("rtdetrv2_hgnetv2_l_6x_coco", eval_only=False, weights_dir=tmp_path)
    assert f"train.init_checkpoint={weights}" in cmd
    cmd += embedded_data_overrides(json_file, image_root, out, "hgnetv2_e2e_val") + [
        "dataloader.train.multiscale_sizes=null", "dataloader.train.stop_aug_epoch=0", "lr_multiplier.warmup=0"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "official hgnetv2 ImageNet backbone" in (out / "log.txt").read_text()
    trained = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    for k, v in state.items():
        ours = trained["backbone." + hgnetv2_key_from_official(k)]
        if k.startswith("stem.") or ".bn." in k:
            assert torch.equal(ours, v), k  # frozen stem, FrozenBatchNorm2d
    stage = "stages.3.blocks.0.layers.0.conv1.conv.weight"
    assert not torch.equal(trained["backbone." + hgnetv2_key_from_official(stage)], state[stage])
