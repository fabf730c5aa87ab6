"""MLLA placements beyond the backbone and the intra-scale block: the "mlla" fusion block (CSP layer
of MLLA blocks), MLLA stages in a convolutional backbone (hybrid backbone) and the attention-only
MLLA layer inserted after backbone stages.

Besides shapes and gradients, the layout checks here catch the usual mistakes of MLLA ports:
tokens made with ``reshape`` instead of a permute (channels and positions scrambled), code that
only works on square maps, and a 1-D RoPE that encodes only the width. The main check is an exact
symmetry: transposing the input map (H <-> W) of a single-head MLLA module equals transposing its
output, once the module's depthwise kernels are transposed and q/k's row and column RoPE channels
are swapped. It holds only if tokens are laid out by position, RoPE encodes both axes on the
runtime grid, and nothing assumes H == W.
"""
import copy
import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from torch import nn

import mlla_rtdetr.modeling.layers.mlla as mlla_layers
from mlla_rtdetr.errors import ConfigError
from mlla_rtdetr.modeling.backbone import STAGE_BLOCKS, MLLABackbone, PResNet
from mlla_rtdetr.modeling.backbone.mlla_stages import MLLAMapStage
from mlla_rtdetr.modeling.encoder import FUSION_BLOCKS, CSPRepLayer, HybridEncoder, RepVggBlock
from mlla_rtdetr.modeling.encoder.fusion import RepNCSPELAN4
from mlla_rtdetr.modeling.encoder.mlla_intra_scale import MLLAIntraScale
from mlla_rtdetr.modeling.layers import LinearAttention, MLLABlock, RoPE2D, map_to_tokens, tokens_to_map
from mlla_utils import expected_places, mlla_places
from tools_utils import REPO_ROOT, spread_weights_


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def transposed_twin(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that computes ``f(x^T)^T``: every conv kernel transposed and, in every
    (single-head) linear attention, q/k's row-RoPE channel pairs swapped with the column ones."""
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight.transpose(-1, -2).clone())
            elif isinstance(m, LinearAttention):
                assert m.num_heads == 1, "the symmetry mixes heads; build the module with one head"
                d = m.dim
                swap = torch.cat([torch.arange(d // 2, d), torch.arange(0, d // 2)])
                rows = torch.cat([swap, swap + d])  # the same swap on the q rows and the k rows
                m.qk.weight.copy_(m.qk.weight[rows].clone())
                if m.qk.bias is not None:
                    m.qk.bias.copy_(m.qk.bias[rows].clone())
    return twin


def assert_transpose_equivariant(module: nn.Module, x: torch.Tensor) -> None:
    """f_twin(x^T) == f(x)^T. The weights are re-drawn well spread first: at MLLA's training init
    q and k are so small that RoPE moves the outputs by ~1e-4, too little for the check to see a
    wrong position encoding; spread, a wrong one moves them by ~1e-1."""
    module = spread_weights_(module).eval()
    twin = transposed_twin(module)
    with torch.no_grad():
        y, y_t = module(x), twin(x.transpose(-1, -2).contiguous())
    if isinstance(y, dict):
        assert y.keys() == y_t.keys()
        pairs = [(y[k], y_t[k]) for k in y]
    else:
        pairs = [(y, y_t)]
    for a, b in pairs:
        torch.testing.assert_close(b, a.transpose(-1, -2), rtol=1e-4, atol=1e-4)


def assert_grads_everywhere(module: nn.Module, loss: torch.Tensor) -> None:
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def _encoder(**kwargs):
    return HybridEncoder([32, 64, 128], [8, 16, 32], hidden_dim=64, nhead=4, dim_feedforward=128,
                         expansion=0.5, **kwargs)


def _feats(h5, w5, batch=2):
    """Backbone-shaped maps whose stride-32 map is h5 x w5 (each level exactly twice the next)."""
    return [torch.randn(batch, 32, 4 * h5, 4 * w5), torch.randn(batch, 64, 2 * h5, 2 * w5),
            torch.randn(batch, 128, h5, w5)]


def _tiny_resnet(**kwargs):
    return PResNet(depth=18, base_width=16, **kwargs)


HYBRID = {"res4": "mlla", "res5": "mlla"}
ATTENTION = {"res3": "mlla_attention", "res4": "mlla_attention", "res5": "mlla_attention"}


# ---------------------------------------------------------------------------------------------
# fusion
# ---------------------------------------------------------------------------------------------
def test_fusion_registry_default_is_the_official_block():
    assert {"csprep", "mlla"} <= set(FUSION_BLOCKS.names())
    enc = _encoder()
    assert enc.fpn_fusion == enc.pan_fusion == ["csprep", "csprep"]
    for block in list(enc.fpn_blocks) + list(enc.pan_blocks):
        assert type(block) is CSPRepLayer and all(type(b) is RepVggBlock for b in block.bottlenecks)


def test_fusion_selectable_per_block_with_config():
    torch.manual_seed(0)
    enc = _encoder(fpn_fusion=["mlla", "csprep"], pan_fusion={"name": "mlla", "num_layers": 1, "head_dim": 16})
    mlla_blocks = [enc.fpn_blocks[0], enc.pan_blocks[0], enc.pan_blocks[1]]
    for block in mlla_blocks:
        assert type(block) is CSPRepLayer and isinstance(block.bottlenecks, MLLAIntraScale)
    assert isinstance(enc.fpn_blocks[1].bottlenecks, nn.Sequential)
    assert len(enc.fpn_blocks[0].bottlenecks.layers) == 3  # as many blocks as the RepVGG ones replaced
    assert len(enc.pan_blocks[0].bottlenecks.layers) == 1
    assert enc.fpn_blocks[0].bottlenecks.layers[0].attn.num_heads == 1  # hidden 32 / head_dim 32
    assert enc.pan_blocks[0].bottlenecks.layers[0].attn.num_heads == 2  # hidden 32 / head_dim 16
    keys = enc.state_dict().keys()
    assert "fpn_blocks.0.bottlenecks.layers.2.attn.qk.weight" in keys
    assert "fpn_blocks.1.bottlenecks.2.conv1.conv.weight" in keys  # official names where unchanged
    with pytest.raises(ValueError, match="one entry per block"):
        _encoder(fpn_fusion=["mlla"])
    with pytest.raises(KeyError, match="Registered"):
        _encoder(pan_fusion="no_such_block")


@pytest.mark.parametrize("h5,w5", [(3, 5), (1, 4), (5, 5)])
def test_fusion_encoder_any_size_and_deploy(h5, w5):
    torch.manual_seed(0)
    enc = _encoder(fpn_fusion="mlla", pan_fusion=["csprep", "mlla"]).eval()
    feats = _feats(h5, w5)
    with torch.no_grad():
        outs = enc(feats)
        assert [tuple(o.shape) for o in outs] == [(2, 64, 4 * h5, 4 * w5), (2, 64, 2 * h5, 2 * w5), (2, 64, h5, w5)]
        torch.testing.assert_close(enc(feats)[0][1:], enc([f[1:] for f in feats])[0], rtol=1e-4, atol=1e-5)
        enc.deploy()  # folds the RepVGG blocks that remain; the MLLA blocks are untouched
        for a, b in zip(enc(feats), outs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_fusion_block_gradients_and_transpose_symmetry():
    torch.manual_seed(0)
    block = FUSION_BLOCKS.build({"name": "mlla", "num_layers": 2, "drop_path": 0.1}, 64, 32, 3, 1.0, "silu").train()
    x = torch.randn(2, 64, 7, 11)
    assert block(x).shape == (2, 32, 7, 11)
    assert_grads_everywhere(block, block(x).square().mean())
    assert_transpose_equivariant(FUSION_BLOCKS.build("mlla", 64, 32, 2, 1.0, "silu"), torch.randn(2, 64, 5, 9))


def test_mlla_elan_fusion_keeps_dfine_block_and_its_keys():
    """"mlla_elan": D-FINE's CSP-ELAN block of the same widths, MLLA blocks in its two CSP layers;
    every other key is the "rep_ncsp_elan4" block's, so only the bottlenecks start from scratch."""
    torch.manual_seed(0)
    elan = FUSION_BLOCKS.build("rep_ncsp_elan4", 128, 64, 1, 0.5, "silu")
    mlla = FUSION_BLOCKS.build({"name": "mlla_elan", "num_layers": 2, "head_dim": 16}, 128, 64, 1, 0.5, "silu").train()
    assert type(mlla) is type(elan) is RepNCSPELAN4
    for csp in (mlla.cv2[0], mlla.cv3[0]):
        assert isinstance(csp.bottlenecks, MLLAIntraScale) and len(csp.bottlenecks.layers) == 2
        assert csp.bottlenecks.dim == 16 and csp.bottlenecks.layers[0].attn.num_heads == 1  # c4 = 0.5 * 64 // 2
    kept = {k: v.shape for k, v in elan.state_dict().items() if ".bottlenecks." not in k}
    assert kept == {k: v.shape for k, v in mlla.state_dict().items() if ".bottlenecks." not in k}
    x = torch.randn(2, 128, 5, 9)
    assert mlla(x).shape == (2, 64, 5, 9)
    assert_grads_everywhere(mlla, mlla(x).square().mean())
    single_head = FUSION_BLOCKS.build({"name": "mlla_elan", "head_dim": 64}, 128, 64, 1, 0.5, "silu")
    assert_transpose_equivariant(single_head, torch.randn(2, 128, 5, 9))


# ---------------------------------------------------------------------------------------------
# hybrid backbone (MLLA stages in ResNet-vd) and attention-only layers
# ---------------------------------------------------------------------------------------------
def test_hybrid_resnet_stages_shapes_and_keys():
    torch.manual_seed(0)
    plain, hybrid = _tiny_resnet(), _tiny_resnet(stage_blocks=HYBRID)
    assert hybrid.output_shape() == plain.output_shape()
    for name in ("res4", "res5"):
        stage = hybrid.res_layers[hybrid.stage_names.index(name)]
        assert isinstance(stage, MLLAMapStage) and stage.stride == 2 and len(stage.stage.blocks) == 2
        # ResNet-vd's downsampling (2x2 average pool + 1x1 conv + BN) by default
        assert [type(m).__name__ for m in stage.downsample.children()] == ["AvgPool2d", "ConvNormAct"]
    assert isinstance(hybrid.res_layers[1], type(plain.res_layers[1]))
    # Unchanged parts keep their keys and shapes: ImageNet ResNet-vd weights load into them.
    plain_keys = {k: v.shape for k, v in plain.state_dict().items() if not k.startswith(("res_layers.2", "res_layers.3"))}
    hybrid_keys = {k: v.shape for k, v in hybrid.state_dict().items() if not k.startswith(("res_layers.2", "res_layers.3"))}
    assert plain_keys == hybrid_keys
    for hw in [(97, 131), (64, 64), (33, 200)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            got, ref = hybrid.eval()(x), plain.eval()(x)
        assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in ref.items()}, hw
    # depth and heads are configurable per stage
    deep = _tiny_resnet(stage_blocks={"res5": {"name": "mlla", "depth": 3, "num_heads": 2, "mlp_ratio": 2.0}})
    assert len(deep.res_layers[3].stage.blocks) == 3 and deep.res_layers[3].stage.blocks[0].attn.num_heads == 2


def test_hybrid_stage_keys_are_mlla_stage_keys():
    """With MLLA's downsampling, an MLLA stage in the hybrid is MLLA's PatchMerging + MLLA blocks
    with MLLA's key names, so an MLLA ImageNet checkpoint's layers.{i-1}.downsample and
    layers.{i}.blocks fit it."""
    merging = {"name": "mlla", "downsample": "patch_merging"}
    hybrid = _tiny_resnet(stage_blocks={"res4": merging, "res5": merging})  # res3/res4/res5: 32/64/128
    mlla = MLLABackbone(embed_dim=16, depths=(1, 1, 2, 2), num_heads=(1, 1, 2, 4))  # widths 16/32/64/128
    ours = hybrid.state_dict()
    theirs = mlla.state_dict()
    for i, stage in ((2, "res_layers.2"), (3, "res_layers.3")):
        mapped = {k.replace(f"layers.{i - 1}.downsample.", f"{stage}.downsample.", 1): v
                  for k, v in theirs.items() if k.startswith(f"layers.{i - 1}.downsample.")}
        mapped.update({k.replace(f"layers.{i}.blocks.", f"{stage}.stage.blocks.", 1): v
                       for k, v in theirs.items() if k.startswith(f"layers.{i}.blocks.")})
        ours_stage = {k: v for k, v in ours.items() if k.startswith(stage + ".")}
        assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours_stage.items()}


def test_stage_replacement_of_a_stride_one_stage_and_bottleneck_resnet():
    r50 = PResNet(depth=50, base_width=8, out_features=("res2", "res3", "res4", "res5"),
                  stage_blocks={"res2": {"name": "mlla", "num_heads": 1}, "res4": "mlla"})
    assert r50.res_layers[0].stride == 1 and r50.res_layers[0].downsample is not None  # 1x1 proj 8 -> 32
    with torch.no_grad():
        out = r50.eval()(torch.randn(1, 3, 70, 45))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 32, 18, 12), "res3": (1, 64, 9, 6), "res4": (1, 128, 5, 3), "res5": (1, 256, 3, 2)}


def test_stage_block_config_errors():
    with pytest.raises(ConfigError, match="does not build"):
        _tiny_resnet(out_features=("res3", "res4"), stage_blocks={"res5": "mlla"})
    with pytest.raises(ConfigError, match="freeze_at"):
        _tiny_resnet(freeze_at=3, stage_blocks={"res4": "mlla"})
    with pytest.raises(ConfigError, match="insert_after"):
        _tiny_resnet(stage_blocks={"res4": "mlla_attention"})
    with pytest.raises(ConfigError, match="Registered"):
        _tiny_resnet(insert_after={"res4": "no_such_block"})
    with pytest.raises(ConfigError, match="stage names to blocks"):
        _tiny_resnet(insert_after=["res4"])
    assert {"mlla", "mlla_attention"} <= set(STAGE_BLOCKS.names())


def test_attention_layers_start_as_identity_then_train():
    torch.manual_seed(0)
    plain = _tiny_resnet(freeze_at=0)
    model = _tiny_resnet(freeze_at=0, insert_after=ATTENTION)
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("after_stage.") for k in missing)  # pretrained weights load
    layer = model.after_stage["res4"]
    block = layer.stage.blocks[0]
    assert isinstance(block, MLLABlock) and not block.has_mlp and not hasattr(block, "mlp")
    assert layer.downsample is None and block.attn.num_heads == 2  # 64 channels / head_dim 32
    x = torch.randn(2, 3, 75, 101)
    with torch.no_grad():
        for k, v in model.eval()(x).items():
            torch.testing.assert_close(v, plain.eval()(x)[k], rtol=0, atol=0)
    # New layers train even where the backbone is frozen; after one step every parameter of
    # theirs receives gradient (at step 0 only the zero-initialised branches do).
    model.train()
    new = [p for n, p in model.named_parameters() if n.startswith("after_stage.")]
    assert all(p.requires_grad for p in new) and not any(p.requires_grad for p in model.conv1.parameters())
    opt = torch.optim.SGD(new, lr=0.1)
    sum(v.square().mean() for v in model(x).values()).backward()
    opt.step()
    opt.zero_grad()
    sum(v.square().mean() for v in model(x).values()).backward()
    for n, p in model.after_stage.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_hybrid_backbone_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = _tiny_resnet(stage_blocks={"res4": {"name": "mlla", "drop_path": 0.1}, "res5": "mlla"},
                         insert_after={"res3": {"name": "mlla_attention", "identity_init": False}}).train()
    out = model(torch.randn(2, 3, 67, 93))
    assert_grads_everywhere(model, sum(v.square().mean() for v in out.values()))


def test_hgnetv2_plain_is_unchanged_and_takes_both_backbone_placements():
    from mlla_rtdetr.modeling.backbone import HGNetv2
    from mlla_rtdetr.modeling.backbone.timm_backbone import TimmBackbone

    torch.manual_seed(0)
    plain = HGNetv2("L", freeze_norm=True, freeze_at=0).eval()
    assert plain.stage_names == ("res2", "res3", "res4", "res5")
    assert [plain.stage_infos[n].stride for n in plain.stage_names] == [1, 2, 2, 2]
    x = torch.randn(2, 3, 67, 93)  # odd, non-square
    with torch.no_grad():
        staged, timm_features = plain(x), TimmBackbone.forward(plain, x)
    for name in staged:
        assert torch.equal(staged[name], timm_features[name]), name

    hybrid = HGNetv2("L", stage_blocks={"res5": {"name": "mlla", "num_heads": 4}},
                     insert_after={"res4": {"name": "mlla_attention", "identity_init": False}}).train()
    assert hybrid.output_shape() == plain.output_shape()
    unchanged = [k for k in plain.state_dict() if not k.startswith("body.stages_3.")]
    assert set(unchanged) <= set(hybrid.state_dict())  # ImageNet keys of the kept stages still load
    out = hybrid(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(v.shape) for k, v in staged.items()}
    assert_grads_everywhere(hybrid, sum(v.square().mean() for v in out.values()))


def test_hgnetv2_recipe_takes_the_placements_by_override():
    from detectron2.config import instantiate
    from mlla_rtdetr.engine import load_config

    cfg = load_config("rtdetrv2_hgnetv2_l_6x_coco.py", [
        "model.backbone.stage_blocks={res5:{name:mlla,depth:1}}",
        "model.backbone.insert_after={res4:mlla_attention}",
    ])
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone.body.stages_3, MLLAMapStage) and list(backbone.after_stage) == ["res4"]
    assert {k: v.channels for k, v in backbone.output_shape().items()} == {"res3": 512, "res4": 1024, "res5": 2048}


# ---------------------------------------------------------------------------------------------
# token layout and RoPE: the checks that catch the community bugs
# ---------------------------------------------------------------------------------------------
def _single_head_backbone():
    torch.manual_seed(0)
    return _tiny_resnet(stage_blocks={"res4": {"name": "mlla", "num_heads": 1}, "res5": {"name": "mlla", "num_heads": 1}},
                        insert_after={"res3": {"name": "mlla_attention", "num_heads": 1, "identity_init": False}})


def test_transposing_the_image_transposes_every_output():
    """Whole hybrid backbone (conv stem/stages, attention layer after res3, MLLA res4/res5) on a
    non-square image with odd sides: f_twin(x^T) == f(x)^T at every output."""
    assert_transpose_equivariant(_single_head_backbone(), torch.randn(1, 3, 45, 77))
    merging = MLLAMapStage(16, 32, stride=2, downsample="patch_merging", num_heads=1)
    assert_transpose_equivariant(merging, torch.randn(2, 16, 7, 12))
    assert_transpose_equivariant(MLLAMapStage(32, 32, depth=2, num_heads=1), torch.randn(2, 32, 6, 11))
    assert_transpose_equivariant(MLLAIntraScale(32, 1, 64, num_layers=1), torch.randn(2, 32, 3, 7))


@pytest.mark.parametrize("bug", ["reshape_tokens", "width_only_rope", "square_grid_rope"])
def test_the_symmetry_check_catches_the_community_bugs(monkeypatch, bug):
    """The same check fails when tokens are made with reshape (NCHW memory read as (N, C)), when
    RoPE rotates every channel pair by the column index only, or when RoPE assumes a square grid
    (side ``isqrt(N)``, positions taken from its first N cells) on a non-square map."""
    if bug == "reshape_tokens":
        monkeypatch.setattr(mlla_layers, "map_to_tokens", lambda x: x.reshape(x.shape[0], -1, x.shape[1]))
        monkeypatch.setattr(mlla_layers, "tokens_to_map", lambda x, hw: x.reshape(x.shape[0], x.shape[2], *hw))
    elif bug == "square_grid_rope":
        correct = mlla_layers._rope_tables_uncached

        def square_grid(h, w, dim, base, device, dtype):
            side = math.isqrt(h * w)
            cos, sin = correct(side, -(-h * w // side), dim, base, device, dtype)
            return cos[: h * w], sin[: h * w]

        monkeypatch.setattr(mlla_layers, "_rope_tables_uncached", square_grid)
    else:
        def width_only(h, w, dim, base, device, dtype):
            theta = 1 / (base ** (torch.arange(dim // 2, device=device) / (dim // 2)))
            angles = (torch.arange(w, device=device)[:, None] * theta).expand(h, w, dim // 2)
            cos2 = angles.cos().repeat_interleave(2, dim=-1).reshape(h * w, dim)
            sin2 = torch.stack([-angles.sin(), angles.sin()], dim=-1).reshape(h * w, dim)
            return cos2.to(dtype), sin2.to(dtype)

        monkeypatch.setattr(mlla_layers, "_rope_tables_uncached", width_only)
    caches = [f for f in vars(mlla_layers).values() if hasattr(f, "cache_clear")]  # RoPE tables per size
    for f in caches:
        f.cache_clear()
    try:
        stage = MLLAMapStage(32, 32, depth=1, num_heads=1)
        with pytest.raises(AssertionError):
            assert_transpose_equivariant(stage, torch.randn(2, 32, 6, 11))
    finally:
        for f in caches:
            f.cache_clear()


def test_tokens_are_positions_in_row_major_order():
    x = torch.randn(2, 8, 3, 5)
    tokens = map_to_tokens(x)
    assert tokens.shape == (2, 15, 8)
    for y, c in ((0, 0), (1, 4), (2, 3)):
        torch.testing.assert_close(tokens[:, y * 5 + c], x[:, :, y, c])  # token (y, c) = all channels there
    torch.testing.assert_close(tokens_to_map(tokens, (3, 5)), x)
    # A stage equals MLLA blocks on explicitly permuted tokens; a reshape-made token sequence differs.
    torch.manual_seed(0)
    stage = MLLAMapStage(8, 8, depth=1, num_heads=2).eval()
    ref_tokens = x.permute(0, 2, 3, 1).reshape(2, 15, 8)
    with torch.no_grad():
        ref = stage.stage.blocks[0](ref_tokens, (3, 5)).reshape(2, 3, 5, 8).permute(0, 3, 1, 2)
        torch.testing.assert_close(stage(x), ref)
        scrambled = stage.stage.blocks[0](x.reshape(2, 15, 8), (3, 5)).reshape(2, 3, 5, 8).permute(0, 3, 1, 2)
        assert (scrambled - ref).abs().max() > 1e-2


def test_rope_encodes_rows_and_columns_relatively_on_any_grid():
    rope = RoPE2D(16)
    h, w = 3, 7
    q = torch.randn(16).expand(1, h * w, 16)
    k = torch.randn(16).expand(1, h * w, 16)
    qr, kr = rope(q, (h, w))[0].reshape(h, w, 16), rope(k, (h, w))[0].reshape(h, w, 16)
    # the rotation changes along both axes: the first half of the pairs with the row, the second
    # half with the column
    assert not torch.allclose(qr[0, 0], qr[1, 0]) and not torch.allclose(qr[0, 0], qr[0, 1])
    torch.testing.assert_close(qr[1, 0, 8:], qr[0, 0, 8:])  # column channels ignore the row
    torch.testing.assert_close(qr[0, 1, :8], qr[0, 0, :8])  # row channels ignore the column
    # q.k depends only on the offset (dy, dx) between the two positions
    dot = lambda a, b: (qr[a] * kr[b]).sum()  # noqa: E731
    torch.testing.assert_close(dot((2, 5), (1, 3)), dot((1, 2), (0, 0)), rtol=1e-5, atol=1e-5)
    assert not torch.isclose(dot((2, 5), (1, 3)), dot((1, 3), (2, 5)))
    # the tables follow the runtime grid: a 7x3 grid is the transpose of a 3x7 one with the
    # row / column halves exchanged
    cos_a, _ = mlla_layers.rope_tables(3, 7, 16)
    cos_b, _ = mlla_layers.rope_tables(7, 3, 16)
    a = cos_a.reshape(3, 7, 16).transpose(0, 1)
    torch.testing.assert_close(cos_b.reshape(7, 3, 16)[..., :8], a[..., 8:])


# ---------------------------------------------------------------------------------------------
# ONNX export of a model with every placement at once (dynamic batch)
# ---------------------------------------------------------------------------------------------
ALL_PLACEMENTS = [
    "model.encoder.use_encoder_idx=[1,2]", "model.encoder.attention=mlla",
    "model.encoder.fpn_fusion={name:mlla,num_layers:1}", "model.encoder.pan_fusion=[csprep,mlla]",
    "model.backbone.stage_blocks={res5:{name:mlla,depth:1}}",
    "model.backbone.insert_after={res3:mlla_attention,res4:mlla_attention}",
]


def test_every_placement_exports_to_onnx_with_a_dynamic_batch(tmp_path):
    pytest.importorskip("onnxruntime")
    from mlla_rtdetr.engine import load_config
    from detectron2.config import instantiate
    from tools_utils import REPO_ROOT, load_tool

    config = str(REPO_ROOT / "projects" / "mlla_rtdetr" / "configs" / "placement_study_synthetic.py")
    model = spread_weights_(instantiate(load_config(config, ALL_PLACEMENTS).model), seed=0)
    assert isinstance(model.backbone.res_layers[3], MLLAMapStage) and len(model.backbone.after_stage) == 2
    ckpt = tmp_path / "placements.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    report = tmp_path / "report.json"
    result = load_tool("export_onnx").main(
        ["--config-file", config, "--checkpoint", str(ckpt), "--output", str(tmp_path / "m.onnx"),
         "--input-size", "96", "160", "--check-batch", "3", "--report", str(report), *ALL_PLACEMENTS])
    assert result["passed"]
    import json

    saved = json.loads(report.read_text())
    entry = saved["batches"]["3"]  # traced at batch 2, run at batch 3
    assert entry["passed"] and {s[0] for s in entry["shapes"].values()} == {3}
    assert max(entry["max_abs_diff_matched"].values()) <= 1e-4


# ---------------------------------------------------------------------------------------------
# ImageNet initialisation of the hybrid backbone (tools/convert_mlla_checkpoint.py --target hybrid)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["mlla_hybrid_r18vd_120e_coco.py", "mlla_deim_rtdetrv2_r18vd_120e_coco.py"])
def test_hybrid_recipe_init_from_imagenet_resnet_and_mlla(tmp_path, recipe):
    """The command of the hybrid recipe's docstring and the model zoo README, on stand-ins for the
    official ImageNet files (same formats and widths, random values; the MLLA-T stand-in has one
    block per stage): every backbone tensor gets a source."""
    import subprocess
    import sys

    from mlla_rtdetr.modeling.backbone.mlla import MLLAClassifier
    from mlla_rtdetr.engine import build_model, load_config
    from tools_utils import REPO_ROOT

    torch.manual_seed(0)
    mlla_t = MLLAClassifier(embed_dim=64, depths=(1, 1, 1, 1), num_heads=(2, 4, 8, 16))  # MLLA-T widths / heads
    torch.save({"model": mlla_t.state_dict()}, tmp_path / "MLLA_T.pth")  # official layout: under "model"
    resnet = PResNet(depth=18, out_features=("res2", "res3", "res4", "res5"))
    torch.save(resnet.state_dict(), tmp_path / "ResNet18_vd.pth")  # official layout: a bare state dict
    recipe = str(REPO_ROOT / "projects" / "mlla_rtdetr" / "configs" / recipe)
    out = tmp_path / "hybrid_r18_in1k.pth"
    proc = subprocess.run([sys.executable, "tools/convert_mlla_checkpoint.py", "--target", "hybrid",
                           "--input", str(tmp_path / "MLLA_T.pth"), "--resnet-vd", str(tmp_path / "ResNet18_vd.pth"),
                           "--config", recipe, "--output", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 tensors  keep their initialisation" in proc.stdout
    # train.init_checkpoint loads it by name into the detector
    model = build_model(load_config(recipe, [f"train.init_checkpoint={out}"]), device="cpu")
    b, m, r = model.backbone.state_dict(), mlla_t.state_dict(), resnet.state_dict()
    assert torch.equal(b["conv1.conv1_1.conv.weight"], r["conv1.conv1_1.conv.weight"])
    assert torch.equal(b["res_layers.1.blocks.1.branch2b.conv.weight"], r["res_layers.1.blocks.1.branch2b.conv.weight"])
    assert torch.equal(b["res_layers.2.downsample.conv.conv.weight"], r["res_layers.2.blocks.0.short.conv.conv.weight"])
    assert torch.equal(b["res_layers.3.downsample.conv.norm.running_var"], r["res_layers.3.blocks.0.short.conv.norm.running_var"])
    assert torch.equal(b["res_layers.2.stage.blocks.0.attn.qk.weight"], m["layers.2.blocks.0.attn.qk.weight"])
    assert torch.equal(b["res_layers.3.stage.blocks.0.mlp.fc2.weight"], m["layers.3.blocks.0.mlp.fc2.weight"])


# ---------------------------------------------------------------------------------------------
# RT-DETR-R18-cost recipes: the R18 recipe plus one placement, nothing else
# ---------------------------------------------------------------------------------------------
def _flat(node, prefix=""):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig):
        out = {}
        for k in node.keys():
            out.update(_flat(node._get_node(k), f"{prefix}{k}."))
        return out
    if isinstance(node, ListConfig):
        return {prefix[:-1]: OmegaConf.to_container(node)}
    value = node._value() if hasattr(node, "_value") else node
    return {prefix[:-1]: value}


HYBRID_RES4_RES5 = {
    "model.backbone.stage_blocks.res4.name": "mlla", "model.backbone.stage_blocks.res4.depth": 1,
    "model.backbone.stage_blocks.res5.name": "mlla", "model.backbone.stage_blocks.res5.depth": 1}
MLLA_ON_S5 = {"model.encoder.attention": ["mlla"], "model.encoder.attention_cfg": [{"drop_path": 0.0}]}
#: recipe -> (the baseline recipe it imports, what it changes besides train.output_dir)
PLACEMENT_RECIPES = {
    "mlla_fusion_r18vd_120e_coco.py": ("rtdetrv2_r18vd_120e_coco.py", {
        "model.encoder.fpn_fusion.name": "mlla", "model.encoder.fpn_fusion.num_layers": 1,
        "model.encoder.pan_fusion.name": "mlla", "model.encoder.pan_fusion.num_layers": 1}),
    "mlla_hybrid_r18vd_120e_coco.py": ("rtdetrv2_r18vd_120e_coco.py", HYBRID_RES4_RES5),
    "mlla_attn_r18vd_120e_coco.py": ("rtdetrv2_r18vd_120e_coco.py", {
        "model.backbone.insert_after.res4.name": "mlla_attention",
        "model.backbone.insert_after.res5.name": "mlla_attention"}),
    # MLLA on the DEIM models, at their baselines' cost (model zoo README, "MLLA on D-FINE and DEIM")
    "mlla_deim_rtdetrv2_r18vd_120e_coco.py": ("deim_rtdetrv2_r18vd_120e_coco.py", {**HYBRID_RES4_RES5, **MLLA_ON_S5}),
    "mlla_deim_dfine_hgnetv2_s_coco.py": ("deim_dfine_hgnetv2_s_coco.py", MLLA_ON_S5),
}


@pytest.mark.parametrize("name", sorted(PLACEMENT_RECIPES))
def test_placement_recipes_change_only_the_placement(name):
    from detectron2.config import LazyConfig, instantiate

    cfg_dir = REPO_ROOT / "projects" / "mlla_rtdetr" / "configs"
    base_name, changes = PLACEMENT_RECIPES[name]
    base_cfg = LazyConfig.load(str(cfg_dir / base_name))
    sections = ("model", "dataloader", "optimizer", "lr_multiplier", "train")  # a recipe (not its helper variables)
    base = {k: v for k, v in _flat(base_cfg).items() if k.split(".")[0] in sections}
    cfg = LazyConfig.load(str(cfg_dir / name))
    got = _flat(cfg)
    changed = {k: v for k, v in got.items() if base.get(k, "<absent>") != v}
    assert changed.pop("train.output_dir") == f"./output/{name[:-3]}"
    assert changed == changes
    assert not [k for k in base if k not in got]
    assert instantiate(cfg.model.backbone).output_shape() == instantiate(base_cfg.model.backbone).output_shape()


#: Official GFLOPs at 640 (mlla_rtdetr.utils.flops.official_gflops, as tools/benchmark.py --flops and
#: tools/analyze_model.py count them) of the MLLA DEIM recipes and their baselines: the model zoo
#: README's "MLLA on D-FINE and DEIM" table.
DEIM_RECIPE_GFLOPS = {
    "deim_dfine_hgnetv2_s_coco.py": 25.23, "mlla_deim_dfine_hgnetv2_s_coco.py": 25.30,
    "deim_rtdetrv2_r18vd_120e_coco.py": 61.05, "mlla_deim_rtdetrv2_r18vd_120e_coco.py": 53.48,
}


@pytest.mark.parametrize("name", ["mlla_deim_dfine_hgnetv2_s_coco.py", "mlla_deim_rtdetrv2_r18vd_120e_coco.py"])
def test_mlla_deim_recipes_cost_at_most_their_baselines_gflops(name):
    """GFLOPs are deterministic: the ratio is checked here, latency in the benchmark (README)."""
    from mlla_rtdetr.engine import build_model, load_config
    from mlla_rtdetr.utils.flops import official_gflops

    base_name = PLACEMENT_RECIPES[name][0]
    gflops = {n: official_gflops(build_model(load_config(n), device="cpu"), 640, 640) for n in (base_name, name)}
    assert gflops == {n: pytest.approx(DEIM_RECIPE_GFLOPS[n], abs=0.005) for n in gflops}
    assert gflops[name] / gflops[base_name] <= 1.15


# ---------------------------------------------------------------------------------------------
# every placement on the DEIM models (DEIM-D-FINE: HGNetv2 + D-FINE encoder / decoder; DEIM-RT-DETRv2)
# ---------------------------------------------------------------------------------------------
SWEEPS = REPO_ROOT / "projects" / "mlla_rtdetr" / "configs" / "sweeps"
#: DEIM family -> (model config, its placement sweep file)
DEIM_FAMILIES = {
    "deim_dfine": ("models/deim_dfine_hgnetv2_s.py", SWEEPS / "placements_dfine.txt"),
    "deim_rtdetrv2": ("models/deim_rtdetrv2_r18vd.py", SWEEPS / "placements.txt"),
}
def _sweep_lines(path):
    from mlla_rtdetr.sweep.plan import load_run_list

    return {dict(r.labels)["placement"]: list(r.overrides) for r in load_run_list(str(path))}


#: The DEIM-S model configs at width 64 and 128 px (HGNetv2-B0 keeps its widths, ResNet-18-vd its
#: depth at base width 16): about 1 s per training step + eval forward.
SMALL = ["model.num_classes=5", "model.num_top_queries=20", "model.encoder.hidden_dim=64", "model.encoder.nhead=4",
         "model.encoder.dim_feedforward=128", "model.encoder.eval_spatial_size=[128,128]",
         "model.decoder.hidden_dim=64", "model.decoder.feat_channels=[64,64,64]", "model.decoder.nhead=4",
         "model.decoder.dim_feedforward=128", "model.decoder.num_queries=20", "model.decoder.num_denoising=10",
         "model.decoder.eval_spatial_size=[128,128]"]



def _training_batch():
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    batch = []
    for boxes, classes in (([[4, 8, 60, 70], [20, 30, 110, 90]], [1, 3]), ([[10, 10, 50, 120]], [4])):
        inst = Instances((128, 128))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        batch.append({"image": torch.randint(0, 256, (3, 128, 128), generator=g, dtype=torch.uint8),
                      "instances": inst, "height": 128, "width": 128})
    return batch


def small_deim_model(family: str, placement: str):
    """The family's small model with the placement of its sweep line ("backbone": a small MLLA backbone)."""
    from detectron2.config import LazyCall as L
    from detectron2.config import instantiate

    from mlla_rtdetr.engine import load_config

    model_config, sweep = DEIM_FAMILIES[family]
    small = SMALL + (["model.backbone.base_width=16"] if family == "deim_rtdetrv2" else [])
    overrides = [] if placement == "backbone" else _sweep_lines(sweep)[placement]
    cfg = load_config(model_config, small + overrides)
    if placement == "backbone":  # as models/mlla_rtdetr_t.py, at MLLA width 16
        cfg.model.backbone = L(MLLABackbone)(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 4),
                                             out_features=("res3", "res4", "res5"))
    torch.manual_seed(0)
    return instantiate(cfg.model)


@pytest.mark.parametrize("placement", [p for p in _sweep_lines(SWEEPS / "placements.txt") if p != "none"] + ["backbone"])
@pytest.mark.parametrize("family", sorted(DEIM_FAMILIES))
def test_every_placement_trains_and_evaluates_on_the_deim_models(family, placement):
    """Each placement of the family's sweep file (and the MLLA backbone) on a small DEIM-D-FINE /
    DEIM-RT-DETRv2: built where its line says, the DEIM losses are finite, gradients reach every
    MLLA parameter (at the second step: attention-only layers start as the identity), and the eval
    forward gives the detections."""
    model = small_deim_model(family, placement).train()
    assert mlla_places(model) == expected_places(placement)
    plain = small_deim_model(family, "none")
    assert not mlla_places(plain)
    assert [type(b) for b in model.encoder.fpn_blocks] == [type(b) for b in plain.encoder.fpn_blocks]  # CSP / ELAN kept
    mlla = {n: p for n, p in model.named_parameters()
            if any(n.startswith(m + ".") for m, mod in model.named_modules()
                   if isinstance(mod, (MLLABackbone, MLLAIntraScale, MLLAMapStage)))}
    assert mlla
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in mlla.items()}
    for step in range(2):  # attention-only layers start as the identity: their inner weights get gradients from step 2
        optimizer.zero_grad()
        losses = model(_training_batch())
        terms = {"_".join(k.split("_")[:2]) for k in losses}  # loss_giou_aux_0 -> loss_giou
        # (D-FINE's corner heads start at zero, every layer is its own teacher: DDF from step 2 on)
        dfine_terms = {"loss_fgl"} | ({"loss_ddf"} if step else set())
        assert terms == {"loss_mal", "loss_bbox", "loss_giou"} | (dfine_terms if family == "deim_dfine" else set())
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        if step == 0:
            stepped = [n for n, p in mlla.items() if p.grad is not None and p.grad.abs().sum() > 0]
            optimizer.step()
    no_grad = [n for n, p in mlla.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"no gradient reaches {no_grad[:5]}"
    assert stepped and any(not torch.equal(before[n], mlla[n]) for n in stepped)  # the step moved them
    model.eval()
    with torch.no_grad():
        results = model(_training_batch())
    for r in results:
        inst = r["instances"]
        assert len(inst) == 20 and torch.isfinite(inst.pred_boxes.tensor).all()
        assert ((inst.scores >= 0) & (inst.scores <= 1)).all() and (inst.pred_classes < 5).all()


@pytest.mark.parametrize("family,block", [("deim_dfine", "mlla_elan"), ("deim_rtdetrv2", "mlla")])
def test_use_mlla_fusion_is_the_sweep_files_fusion_line(family, block):
    import runpy

    from mlla_rtdetr.config import config_path
    from mlla_rtdetr.engine import load_config

    model_config, sweep = DEIM_FAMILIES[family]
    use_mlla_fusion = runpy.run_path(str(config_path("models/mlla_placements.py")))["use_mlla_fusion"]
    by_helper = use_mlla_fusion(load_config(model_config).model, block=block)
    by_line = load_config(model_config, _sweep_lines(sweep)["fusion"]).model
    assert by_helper.encoder == by_line.encoder
    assert by_helper.encoder.fpn_fusion.name == by_helper.encoder.pan_fusion.name == block
