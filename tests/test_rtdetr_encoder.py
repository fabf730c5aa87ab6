"""HybridEncoder: official parity (AIFI + CCFF), position embedding, RepVGG deploy, registry."""
import json
import math

import pytest
import torch
from torch import nn

from mlla_rtdetr.checkpoint.rtdetr_converter import convert_official_rtdetr
from mlla_rtdetr.modeling.backbone import PResNet
from mlla_rtdetr.modeling.encoder import (
    INTRA_SCALE_BLOCKS,
    CSPRepLayer,
    HybridEncoder,
    RepVggBlock,
    build_2d_sincos_position_embedding,
)
from parity_state import check_summary, load_manifest, make_input, make_state

# case -> (depth, freeze_norm, in_channels, expansion)
CASES = {
    "rtdetr_v1_r18vd": (18, False, [128, 256, 512], 0.5),
    "rtdetrv2_r18vd": (18, False, [128, 256, 512], 0.5),
    "rtdetrv2_r50vd": (50, True, [512, 1024, 2048], 1.0),
}


def _sub(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_encoder_matches_official_outputs(parity_dir, case):
    depth, freeze_norm, in_channels, expansion = CASES[case]
    path = parity_dir / "fixtures" / f"{case}.manifest.json"
    seed = json.loads(path.read_text())["state_seed"]
    # the converter renames v1 input_proj.{i}.0/1 to .conv/.norm
    state, _ = convert_official_rtdetr(make_state(load_manifest(path), seed))
    backbone = PResNet(depth, freeze_at=0 if freeze_norm else -1, freeze_norm=freeze_norm).eval()
    encoder = HybridEncoder(in_channels, [8, 16, 32], expansion=expansion, eval_spatial_size=(640, 640)).eval()
    backbone.load_state_dict(_sub(state, "backbone."), strict=True)
    encoder.load_state_dict(_sub(state, "encoder."), strict=True)
    expected = torch.load(parity_dir / "fixtures" / f"{case}.expected.pt", weights_only=True)["summaries"]

    captured = {}
    encoder.encoder[0].register_forward_hook(lambda m, i, o: captured.setdefault("aifi", o))
    with torch.no_grad():
        outs = encoder(list(backbone(make_input((1, 3, 640, 640), 1)).values()))
    aifi_tokens = captured["aifi"].flatten(2).permute(0, 2, 1)
    ok, rep = check_summary(expected["encoder.aifi"], aifi_tokens, rtol=1e-4, atol=1e-5)
    assert ok, rep
    for i, out in enumerate(outs):
        ok, rep = check_summary(expected[f"encoder.{i}"], out, rtol=1e-4, atol=1e-5)
        assert ok, (i, rep)


def _formula_embedding(h, w, dim=256, temperature=10000.0):
    """Direct transcription of the fixture README formula (token t = r*w + c; a = t // h; b = t % h)."""
    quarter = dim // 4
    out = torch.empty(h * w, dim, dtype=torch.float64)
    for t in range(h * w):
        a, b = t // h, t % h
        for k in range(quarter):
            omega = 1.0 / temperature ** (k / quarter)
            out[t, k] = math.sin(a * omega)
            out[t, quarter + k] = math.cos(a * omega)
            out[t, 2 * quarter + k] = math.sin(b * omega)
            out[t, 3 * quarter + k] = math.cos(b * omega)
    return out[None]


@pytest.mark.parametrize("hw", [(20, 20), (15, 20), (10, 6)])
def test_position_embedding_matches_formula(hw):
    h, w = hw
    got = build_2d_sincos_position_embedding(h, w, 64)
    assert got.shape == (1, h * w, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _formula_embedding(h, w, 64), rtol=0, atol=2e-6)


def _tiny_encoder(**kw):
    args = dict(in_channels=[16, 24, 32], feat_strides=[8, 16, 32], hidden_dim=32, nhead=4, dim_feedforward=64,
                expansion=0.5)
    args.update(kw)
    return HybridEncoder(**args)


def _feats(h, w, batch=1, channels=(16, 24, 32)):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, h // s, w // s, generator=g) for c, s in zip(channels, (8, 16, 32))]


def test_non_square_and_non_640_inputs_use_the_actual_size():
    enc = _tiny_encoder(eval_spatial_size=(640, 640)).eval()
    feats = _feats(192, 320)
    with torch.no_grad():
        outs = enc(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 32, 24, 40), (1, 32, 12, 20), (1, 32, 6, 10)]

    # The AIFI block must use the embedding of the actual 6x10 map: recompute it by hand.
    block = enc.encoder[0]
    x = enc.input_proj[2](feats[2])
    tokens = x.flatten(2).permute(0, 2, 1)
    pos = _formula_embedding(6, 10, 32).float()
    with torch.no_grad():
        ref = block.layers[0](tokens, pos_embed=pos).permute(0, 2, 1).reshape(x.shape)
        torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)
        # the cached eval-size embedding is the same formula (20x20 for 640)
        torch.testing.assert_close(block.pos_embed.double(), _formula_embedding(20, 20, 32), rtol=0, atol=2e-6)
        # train mode recomputes (same values at the eval size)
        x640 = enc.input_proj[2](_feats(640, 640)[2])
        a = block.eval()(x640)
        b = block.train()(x640)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_mismatched_levels_give_clear_error():
    enc = _tiny_encoder().eval()
    feats = _feats(192, 320)
    feats[0] = feats[0][..., :-1]
    with pytest.raises(ValueError, match="multiple of 32"):
        enc(feats)
    with pytest.raises(ValueError, match="expects 3 maps"):
        enc(feats[:2])


def _randomize_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))


def test_repvgg_deploy_same_outputs_fewer_ops():
    block = RepVggBlock(8, 8, act="silu")
    _randomize_bn(block)
    block.eval()
    x = torch.randn(2, 8, 12, 10)
    with torch.no_grad():
        ref = block(x)
        block.deploy()
        block.deploy()  # idempotent
        got = block(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert not hasattr(block, "conv1") and not hasattr(block, "conv2")
    assert isinstance(block.conv, nn.Conv2d) and block.conv.kernel_size == (3, 3) and block.conv.bias is not None


def test_encoder_deploy_same_outputs_fewer_convs():
    enc = _tiny_encoder()
    _randomize_bn(enc, seed=1)
    enc.eval()
    feats = _feats(128, 192)

    def n_convs(m):
        return sum(isinstance(c, nn.Conv2d) for c in m.modules())

    before = n_convs(enc)
    n_rep = sum(isinstance(m, RepVggBlock) for m in enc.modules())
    with torch.no_grad():
        ref = enc(feats)
        enc.deploy()
        got = enc(feats)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert n_rep == 12 and n_convs(enc) == before - n_rep


def test_csp_expansion_and_depth_mult():
    full = CSPRepLayer(64, 32, num_blocks=3, expansion=1.0)
    assert isinstance(full.conv3, nn.Identity) and full.conv1.conv.out_channels == 32
    half = CSPRepLayer(64, 32, num_blocks=3, expansion=0.5)
    assert half.conv1.conv.out_channels == 16 and half.conv3.conv.in_channels == 16
    enc = _tiny_encoder(depth_mult=0.34)
    assert all(len(b.bottlenecks) == 1 for b in list(enc.fpn_blocks) + list(enc.pan_blocks))


def test_official_key_names():
    keys = set(_tiny_encoder().state_dict())
    for k in ("input_proj.0.conv.weight", "input_proj.2.norm.running_var", "encoder.0.layers.0.self_attn.in_proj_weight",
              "encoder.0.layers.0.linear1.weight", "encoder.0.layers.0.norm2.bias", "lateral_convs.1.conv.weight",
              "fpn_blocks.0.bottlenecks.2.conv2.norm.weight", "fpn_blocks.1.conv3.conv.weight",
              "downsample_convs.0.norm.weight", "pan_blocks.1.conv2.conv.weight"):
        assert k in keys, k
    # the cached position embedding is not part of the state
    assert not any("pos_embed" in k for k in _tiny_encoder(eval_spatial_size=(256, 256)).state_dict())


def test_intra_scale_registry_per_level_blocks():
    name = "test_rtdetr_scaled_identity"

    class Scale(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    if name not in INTRA_SCALE_BLOCKS:
        @INTRA_SCALE_BLOCKS.register(name)
        def _build(dim, num_heads, ffn_dim, dropout, activation, num_layers, factor=1.0):
            return Scale(factor)

    enc = _tiny_encoder(use_encoder_idx=[1, 2], attention=[name, "softmax"], attention_cfg=[{"factor": 2.0}, None])
    assert isinstance(enc.encoder[0], Scale) and enc.encoder[0].factor == 2.0
    assert hasattr(enc.encoder[1], "layers")
    with torch.no_grad():
        enc.eval()(_feats(64, 64))
    with pytest.raises(KeyError, match="Registered"):
        _tiny_encoder(attention="no_such_block")
    with pytest.raises(ValueError, match="one entry per use_encoder_idx"):
        _tiny_encoder(attention=["softmax", "softmax"])
