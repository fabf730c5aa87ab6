"""ResNet-vd (PResNet) backbone: official-parity feature maps, structure, freezing, shapes."""
import json

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from mlla_rtdetr.checkpoint.rtdetr_converter import convert_official_resnet_vd, load_official_resnet_vd
from mlla_rtdetr.modeling.backbone import PResNet
from parity_state import check_summary, load_manifest, make_input, make_state

# case -> (depth, freeze_at, freeze_norm) as in the official configs
CASES = {
    "rtdetr_v1_r18vd": (18, -1, False),
    "rtdetrv2_r18vd": (18, -1, False),
    "rtdetrv2_r50vd": (50, 0, True),
}


def _backbone_state(parity_dir, case):
    path = parity_dir / "fixtures" / f"{case}.manifest.json"
    seed = json.loads(path.read_text())["state_seed"]
    state = make_state(load_manifest(path), seed)
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_backbone_matches_official_feature_maps(parity_dir, case):
    depth, freeze_at, freeze_norm = CASES[case]
    model = PResNet(depth, freeze_at=freeze_at, freeze_norm=freeze_norm).eval()
    state, report = convert_official_resnet_vd(_backbone_state(parity_dir, case), target=model)
    model.load_state_dict(state, strict=True)
    expected = torch.load(parity_dir / "fixtures" / f"{case}.expected.pt", weights_only=True)["summaries"]
    with torch.no_grad():
        feats = model(make_input((1, 3, 640, 640), 1))
    assert list(feats) == ["res3", "res4", "res5"]
    for i, name in enumerate(feats):
        ok, rep = check_summary(expected[f"backbone.{i}"], feats[name], rtol=1e-4, atol=1e-5)
        assert ok, (case, name, rep)


def test_parameter_count_matches_official_manifest(parity_dir):
    for case, (depth, freeze_at, freeze_norm) in CASES.items():
        rows = json.loads((parity_dir / "fixtures" / f"{case}.manifest.json").read_text())["rows"]
        official = sum(torch.Size(r["shape"]).numel() for r in rows if r["key"].startswith("backbone.") and r["kind"] == "param")
        model = PResNet(depth, freeze_at=freeze_at, freeze_norm=freeze_norm)
        assert sum(p.numel() for p in model.parameters()) == official


@pytest.mark.parametrize(
    "depth,channels", [(18, (128, 256, 512)), (34, (128, 256, 512)), (50, (512, 1024, 2048)), (101, (512, 1024, 2048))]
)
def test_output_shape_and_non_square_input(depth, channels):
    model = PResNet(depth).eval()
    assert isinstance(model, Backbone)
    shapes = model.output_shape()
    assert shapes == {
        "res3": ShapeSpec(channels=channels[0], stride=8),
        "res4": ShapeSpec(channels=channels[1], stride=16),
        "res5": ShapeSpec(channels=channels[2], stride=32),
    }
    assert model.size_divisibility == 32
    if depth in (18, 50):  # forward only on the cheaper ones
        with torch.no_grad():
            out = model(torch.rand(1, 3, 96, 160))
        for name, s in shapes.items():
            assert out[name].shape == (1, s.channels, 96 // s.stride, 160 // s.stride)


def test_vd_structure_deep_stem_and_avgpool_shortcut():
    model = PResNet(50)
    assert [m.conv.kernel_size for m in model.conv1] == [(3, 3)] * 3
    assert [m.conv.stride for m in model.conv1] == [(2, 2), (1, 1), (1, 1)]
    # res2 keeps the resolution: strided-conv-free projection shortcut
    assert isinstance(model.res_layers[0].blocks[0].short.conv, nn.Conv2d)
    for stage in model.res_layers[1:]:
        short = stage.blocks[0].short
        assert isinstance(short.pool, nn.AvgPool2d) and short.pool.kernel_size == 2 and short.pool.ceil_mode
        assert short.conv.conv.stride == (1, 1)
        # the stride sits on the 3x3 conv of the bottleneck (variant d)
        assert stage.blocks[0].branch2a.conv.stride == (1, 1) and stage.blocks[0].branch2b.conv.stride == (2, 2)
        assert all(b.shortcut for b in stage.blocks[1:])


def test_freeze_at_and_frozen_batchnorm():
    model = PResNet(18, freeze_at=2, freeze_norm=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv1.", "res_layers.0.", "res_layers.1.")) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith(("res_layers.2.", "res_layers.3.")))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) and m.eps == 1e-5 for m in norms)
    assert not any(k.endswith("num_batches_tracked") for k in model.state_dict())
    # frozen statistics: train mode gives the same output as eval mode
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = model.train()(x)["res5"]
        b = model.eval()(x)["res5"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)

    trainable = PResNet(18, freeze_at=-1, freeze_norm=False)
    assert all(p.requires_grad for p in trainable.parameters())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in trainable.modules()) == 23


def test_frozen_bn_matches_batchnorm_eval_with_same_statistics():
    torch.manual_seed(0)
    bn = PResNet(18, base_width=8)
    for m in bn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1, 0.1)
            m.bias.data.normal_(0, 0.1)
    frozen = PResNet(18, base_width=8, freeze_norm=True)
    convert_state, _ = convert_official_resnet_vd(bn.state_dict(), target=frozen)
    frozen.load_state_dict(convert_state, strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(frozen.eval()(x)["res5"], bn.eval()(x)["res5"], rtol=1e-5, atol=1e-6)


def test_official_imagenet_weights_loader(tmp_path, parity_dir):
    """Official ImageNet ResNet-vd files hold the PResNet state without prefix."""
    state = _backbone_state(parity_dir, "rtdetrv2_r18vd")
    path = tmp_path / "ResNet18_vd_pretrained_from_paddle.pth"
    torch.save(state, path)
    model = PResNet(18)
    report = load_official_resnet_vd(model, path)
    assert report.ok and report.num_tensors == len(state)
    torch.testing.assert_close(model.state_dict()["res_layers.3.blocks.1.branch2b.conv.weight"],
                               state["res_layers.3.blocks.1.branch2b.conv.weight"])
    # prefixed for a detector
    prefixed, _ = convert_official_resnet_vd(state, prefix="backbone.")
    assert all(k.startswith("backbone.") for k in prefixed) and len(prefixed) == len(state)
    # train.init_checkpoint recognises the file and fills the detector's backbone only
    from detectron2.config import instantiate

    from mlla_rtdetr.engine import load_config
    from mlla_rtdetr.engine.init_checkpoint import load_init_checkpoint

    detector = instantiate(load_config("models/rtdetr_r18vd.py").model)
    decoder_before = {k: v.clone() for k, v in detector.decoder.state_dict().items()}
    report = load_init_checkpoint(detector, str(path))
    assert report["format"] == "official resnet_vd ImageNet backbone"
    assert all(torch.equal(detector.backbone.state_dict()[k], v) for k, v in state.items())
    assert all(torch.equal(detector.decoder.state_dict()[k], v) for k, v in decoder_before.items())


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match="depth"):
        PResNet(26)
    with pytest.raises(ValueError, match="out_features"):
        PResNet(18, out_features=("res6",))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        PResNet(18, base_width=8)(torch.rand(1, 1, 32, 32))


def test_small_width_option_scales_channels():
    model = PResNet(18, base_width=16)
    assert {k: v.channels for k, v in model.output_shape().items()} == {"res3": 32, "res4": 64, "res5": 128}
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert out["res5"].shape == (1, 128, 2, 2)
