"""MLLABackbone / MLLAClassifier: shapes, strides, variants, stochastic depth, checkpointing, cost."""
import pytest
import torch
from detectron2.modeling import Backbone

from mlla_rtdetr.modeling.backbone import MLLABackbone, build_mlla_backbone, build_mlla_classifier
from mlla_rtdetr.modeling.backbone.mlla import MLLA_VARIANTS, MLLAClassifier, mlla_t
from mlla_rtdetr.modeling.layers import MLLABlock
from mlla_utils import ALL_STAGES, load_case, tiny_backbone


def _ceil(a, b):
    return -(-a // b)


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (333, 500), (45, 32)])
def test_odd_sizes_shapes_and_strides(size):
    model = tiny_backbone().eval()
    assert isinstance(model, Backbone)
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    spec = model.output_shape()
    assert list(out) == list(ALL_STAGES) == list(spec)
    for name, t in out.items():
        s = spec[name].stride
        assert t.shape == (2, spec[name].channels, _ceil(size[0], s), _ceil(size[1], s)), name
        assert t.is_contiguous() and torch.isfinite(t).all()
    assert [spec[n].stride for n in ALL_STAGES] == [4, 8, 16, 32]
    assert [spec[n].channels for n in ALL_STAGES] == [32, 64, 128, 256]


def test_default_outputs_and_partial_builds():
    model = tiny_backbone(out_features=("res3", "res4", "res5"))
    keys = model.state_dict().keys()
    assert not any(k.startswith("norm0.") for k in keys) and "norm1.weight" in keys
    assert list(model.output_shape()) == ["res3", "res4", "res5"]
    assert model.size_divisibility == 32
    shallow = tiny_backbone(out_features=("res2", "res4"))
    assert len(shallow.layers) == 3 and shallow.layers[-1].downsample is None
    with torch.no_grad():
        out = shallow(torch.rand(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"res2": (1, 32, 16, 24), "res4": (1, 128, 4, 6)}
    with pytest.raises(ValueError, match="out_features"):
        tiny_backbone(out_features=("res6",))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.rand(3, 64, 64))


def test_variants_and_parameter_counts():
    assert MLLA_VARIANTS["mlla_t"]["embed_dim"] == 64 and MLLA_VARIANTS["mlla_t"]["depths"] == (2, 4, 8, 4)
    assert MLLA_VARIANTS["mlla_s"]["depths"] == (3, 6, 21, 6) and MLLA_VARIANTS["mlla_s"]["num_heads"] == (2, 4, 8, 16)
    assert MLLA_VARIANTS["mlla_b"]["embed_dim"] == 96 and MLLA_VARIANTS["mlla_b"]["num_heads"] == (3, 6, 12, 24)
    det_manifest, _ = load_case("mlla_t")
    cls_manifest, _ = load_case("mlla_t_cls")
    backbone = mlla_t(out_features=ALL_STAGES)
    assert sum(p.numel() for p in backbone.parameters()) == det_manifest["num_params"]
    cls = build_mlla_classifier("mlla_t")
    assert sum(p.numel() for p in cls.parameters()) == cls_manifest["num_params"]
    # Stochastic depth: linear from 0 to the rate over all blocks.
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0
             for s in backbone.layers for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)
    assert build_mlla_backbone("mlla_t", drop_path_rate=0.3).layers[3].blocks[-1].drop_path.drop_prob == pytest.approx(0.3)
    with pytest.raises(ValueError, match="Unknown MLLA variant"):
        build_mlla_backbone("mlla_xl")


def test_blocks_shared_with_the_encoder():
    from mlla_rtdetr.modeling.encoder.mlla_intra_scale import MLLAIntraScale

    enc = MLLAIntraScale(64, 4, 256, num_layers=2)
    assert all(type(b) is MLLABlock for b in enc.layers)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = tiny_backbone(drop_path_rate=0.1).train()
    out = model(torch.rand(2, 3, 38, 45))
    sum(o.square().mean() for o in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_activation_checkpointing_same_values_and_grads():
    torch.manual_seed(0)
    ref = tiny_backbone().train()
    ckpt = tiny_backbone(use_checkpoint=True).train()
    ckpt.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 32, 32)
    outs = [m(x) for m in (ref, ckpt)]
    for a, b in zip(outs[0].values(), outs[1].values()):
        torch.testing.assert_close(a, b)
    for m, o in zip((ref, ckpt), outs):
        sum(t.sum() for t in o.values()).backward()
    for (n, p), q in zip(ref.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = tiny_backbone(drop_path_rate=0.5)
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x)["res5"], model(x)["res5"]
    torch.testing.assert_close(a, b)
    model.train()
    with torch.no_grad():
        c, d = model(x)["res5"], model(x)["res5"]
    assert not torch.allclose(c, d)


def test_freeze_at():
    model = tiny_backbone(freeze_at=2)
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())


def test_classifier_shapes():
    model = MLLAClassifier(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_mlla_t_gmacs_at_640():
    """MLLA-T backbone (all four outputs): 33.9 GMACs at 640x640 counted by fvcore."""
    from fvcore.nn import FlopCountAnalysis

    model = mlla_t(out_features=ALL_STAGES).eval()
    fc = FlopCountAnalysis(model, torch.rand(1, 3, 640, 640))
    fc.unsupported_ops_warnings(False)
    fc.uncalled_modules_warnings(False)
    assert fc.total() / 1e9 == pytest.approx(33.9, abs=0.05)
