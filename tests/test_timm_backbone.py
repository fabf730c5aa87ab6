"""TimmBackbone: any timm ``features_only`` model as the backbone of any recipe (one override),
channels / strides flowing into the encoder, frozen norms and stages, local pretrained weights.

timm's ``test_*`` models (a few hundred thousand parameters) stand for their families.
"""
import json
import os
import subprocess
import sys

import pytest
import timm
import torch
from detectron2.config import instantiate

from mlla_rtdetr.engine import load_config
from mlla_rtdetr.engine.overrides import UnknownConfigKeyError
from mlla_rtdetr.errors import ConfigError
from mlla_rtdetr.modeling import RTDETR, HybridEncoder, TimmBackbone
from rtdetr_model_utils import tiny_criterion, tiny_decoder

FAMILIES = ["test_resnet", "test_convnext", "test_efficientnet"]


def swap(name, **args):
    extra = "".join(f", {k}: {v}" for k, v in args.items())
    return f"model.backbone={{_target_: mlla_rtdetr.modeling.TimmBackbone, model_name: {name}{extra}}}"


@pytest.mark.parametrize("name", FAMILIES)
def test_levels_channels_and_strides_come_from_feature_info(name):
    backbone = TimmBackbone(name).eval()
    info = timm.create_model(name, features_only=True).feature_info
    expect = {f"res{s.bit_length() - 1}": (c, s) for c, s in zip(info.channels(), info.reduction()) if s in (8, 16, 32)}
    assert {k: (v.channels, v.stride) for k, v in backbone.output_shape().items()} == expect
    assert backbone.size_divisibility == 32
    with torch.no_grad():
        out = backbone(torch.rand(2, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (2, c, 64 // s, 96 // s) for k, (c, s) in expect.items()}


def test_explicit_out_indices_and_bad_choices():
    backbone = TimmBackbone("test_resnet", out_indices=(1, 2, 3, -1))
    assert [(k, s.stride) for k, s in backbone.output_shape().items()] == [
        ("res2", 4), ("res3", 8), ("res4", 16), ("res5", 32)]
    with pytest.raises(ConfigError, match="no feature map at stride"):
        TimmBackbone("test_vit")  # a plain ViT: every level at stride 16
    with pytest.raises(ConfigError, match="same stride"):
        TimmBackbone("test_vit", out_indices=(0, 1))
    with pytest.raises(ConfigError, match="timm has no model 'resnet_tiny_typo'"):
        TimmBackbone("resnet_tiny_typo")


def test_freeze_at_counts_timm_feature_levels():
    def trainable_roots(model):
        return sorted({n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad})

    resnet = TimmBackbone("test_resnet", freeze_at=2)  # level 0 = stem (stride 2), level 1 = layer1
    assert trainable_roots(resnet) == ["layer2", "layer3", "layer4"]
    convnext = TimmBackbone("test_convnext", freeze_at=0)  # level 0 = stages.0: only the stem
    assert trainable_roots(convnext) == ["stages_0", "stages_1", "stages_2", "stages_3"]
    assert all(p.requires_grad for p in TimmBackbone("test_convnext").parameters())


def test_frozen_norms_keep_outputs_and_activations():
    torch.manual_seed(0)
    plain = TimmBackbone("test_efficientnet").eval()  # timm BatchNormAct2d (BN + activation)
    with torch.no_grad():
        for m in plain.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = plain(x)
        frozen = TimmBackbone("test_efficientnet", freeze_norm=True).eval()
        frozen.body.load_state_dict(plain.body.state_dict(), strict=False)
        got = frozen(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6)


def test_pretrained_from_a_local_file(tmp_path):
    full = timm.create_model("test_resnet")
    path = tmp_path / "test_resnet.pth"
    torch.save(full.state_dict(), path)
    backbone = TimmBackbone("test_resnet", pretrained=str(path))
    torch.testing.assert_close(backbone.body.layer3[0].conv1.weight, full.layer3[0].conv1.weight)
    with pytest.raises(ConfigError, match="do not exist"):
        TimmBackbone("test_resnet", pretrained=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("recipe", ["rtdetr_tiny_synthetic.py", "mlla_rtdetr_tiny_synthetic.py"])
def test_one_override_swaps_the_backbone_of_a_recipe(recipe):
    cfg = load_config(recipe, [swap("test_convnext", freeze_at=0), "model.backbone.drop_path_rate=0.1"])
    model = instantiate(cfg.model).eval()
    assert isinstance(model.backbone, TimmBackbone) and model.backbone.model_name == "test_convnext"
    assert model.encoder.in_channels == [32, 48, 64] and model.encoder.feat_strides == [8, 16, 32]
    with torch.no_grad():
        out = model.forward_raw(torch.rand(1, 3, 64, 64))
    assert out["pred_logits"].shape == (1, cfg.model.num_top_queries, 5)
    # the full-size recipes resolve the same way (no model built here)
    big = load_config("rtdetrv2_r50vd_6x_coco.py", [swap("test_resnet")])
    assert list(big.model.encoder.in_channels) == [48, 192, 96]
    assert list(big.model.decoder.feat_strides) == [8, 16, 32]


def test_override_replacement_checks_the_new_arguments():
    with pytest.raises(UnknownConfigKeyError, match=r"takes no argument\(s\) \['nam'\]"):
        load_config("rtdetr_tiny_synthetic.py", ["model.backbone={_target_: mlla_rtdetr.modeling.HGNetv2, nam: L}"])
    with pytest.raises(UnknownConfigKeyError, match=r"takes no argument\(s\) \['dept'\]"):
        load_config("rtdetr_tiny_synthetic.py", ["model.backbone={_target_: mlla_rtdetr.modeling.PResNet, dept: 18}"])
    # the same target merges as before
    cfg = load_config("rtdetr_tiny_synthetic.py", ["model.backbone={_target_: mlla_rtdetr.modeling.PResNet, depth: 34}"])
    assert cfg.model.backbone.depth == 34 and cfg.model.backbone.base_width == 16


def test_encoder_that_does_not_fit_the_backbone_is_a_config_error():
    backbone = TimmBackbone("test_convnext")
    encoder = HybridEncoder(in_channels=[16, 32, 64], hidden_dim=32, dim_feedforward=64, nhead=4)
    with pytest.raises(ConfigError, match=r"backbone \(TimmBackbone\) gives \[32, 48, 64\]"):
        RTDETR(backbone, encoder, tiny_decoder(5), tiny_criterion(5), num_classes=5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_resnet", "test_convnext"])
def test_train_net_trains_a_timm_backbone(tmp_path, repo_root, name):
    out = tmp_path / name
    cmd = [sys.executable, str(repo_root / "tools" / "train_net.py"), "--config-file",
           "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py", swap(name, freeze_norm="true"),
           "dataloader.train.num_workers=0", "dataloader.train.stop_aug_epoch=0",
           "dataloader.train.mapper.image_size=[128,128]", "dataloader.test.mapper.image_size=[128,128]",
           "model.encoder.eval_spatial_size=[128,128]", "model.decoder.eval_spatial_size=[128,128]",
           "train.max_iter=4", "train.eval_period=4", "train.log_period=2", f"train.output_dir={out}"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    losses = [r["total_loss"] for r in records if "total_loss" in r]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert "bbox_ema/AP" in records[-1]
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert any(k.startswith("backbone.body.") for k in state)
    assert f"model_name: {name}" in (out / "config.yaml").read_text()


@pytest.mark.parametrize("backbone", [
    "{_target_: mlla_rtdetr.modeling.TimmBackbone, model_name: test_convnext}",
    "{_target_: mlla_rtdetr.modeling.HGNetv2, name: L, freeze_at: 0, freeze_norm: true}",
], ids=["timm_convnext", "hgnetv2_l"])
def test_onnx_export_with_dynamic_batch(tmp_path, backbone):
    """tools/export_onnx.py on the tiny recipe with the new backbone families: traced at batch 2,
    onnxruntime at batch 3 equals PyTorch."""
    pytest.importorskip("onnxruntime")
    from tools_utils import TINY_CONFIG, load_tool, spread_weights_

    override = f"model.backbone={backbone}"
    model = spread_weights_(instantiate(load_config(TINY_CONFIG, [override]).model), seed=0)
    ckpt = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    result = load_tool("export_onnx").main([
        "--config-file", TINY_CONFIG, "--checkpoint", str(ckpt), "--output", str(tmp_path / "m.onnx"),
        "--input-size", "64", "--check-batch", "3", "--", override])
    assert result["passed"] and (tmp_path / "m.onnx").is_file()
