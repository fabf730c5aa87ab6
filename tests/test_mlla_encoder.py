"""The "mlla" intra-scale block of the hybrid encoder."""
import math

import pytest
import torch

from mlla_rtdetr.modeling.layers import MLLABlock
from mlla_rtdetr.modeling.encoder import INTRA_SCALE_BLOCKS, HybridEncoder
from mlla_rtdetr.modeling.encoder.mlla_intra_scale import MLLAIntraScale, build_mlla_intra_scale


def _build(**cfg):
    return INTRA_SCALE_BLOCKS.get("mlla")(64, 4, 256, 0.0, "gelu", 2, **cfg)


def test_registered_with_the_contract_signature():
    assert "mlla" in INTRA_SCALE_BLOCKS and INTRA_SCALE_BLOCKS.get("mlla") is build_mlla_intra_scale
    block = _build(drop_path=[0.0, 0.1], qkv_bias=False)
    assert isinstance(block, MLLAIntraScale) and len(block.layers) == 2
    assert all(type(b) is MLLABlock for b in block.layers)
    assert block.layers[0].mlp.fc1.out_features == 256 and block.layers[0].attn.num_heads == 4
    assert block.layers[0].attn.qk.bias is None
    keys = block.state_dict().keys()
    assert "layers.1.attn.qk.weight" in keys and not any("rope" in k for k in keys)
    with pytest.raises(ValueError, match="one rate per layer"):
        _build(drop_path=[0.1])


@pytest.mark.parametrize("hw", [(20, 20), (13, 17), (1, 5)])
def test_any_size_and_position_awareness(hw):
    torch.manual_seed(0)
    block = _build().eval()
    x = torch.randn(2, 64, *hw)
    with torch.no_grad():
        y = block(x)
    assert y.shape == x.shape and y.is_contiguous() and torch.isfinite(y).all()
    # Batch elements are independent.
    with torch.no_grad():
        torch.testing.assert_close(block(x[1:]), y[1:], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="B, 64, H, W"):
        block(torch.randn(1, 32, 4, 4))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    block = _build(drop_path=0.1).train()
    x = torch.randn(2, 64, 6, 9, requires_grad=True)
    block(x).square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    ckpt = _build(use_checkpoint=True).train()
    ckpt.load_state_dict(block.state_dict())
    block.eval(), ckpt.eval()
    torch.testing.assert_close(ckpt(x), block(x))


def test_selectable_per_level_in_hybrid_encoder():
    torch.manual_seed(0)
    enc = HybridEncoder([32, 64, 128], [8, 16, 32], hidden_dim=64, use_encoder_idx=(1, 2),
                        nhead=4, dim_feedforward=128, attention=["mlla", "softmax"],
                        attention_cfg=[{"drop_path": 0.0}, None], eval_spatial_size=(128, 128)).eval()
    assert isinstance(enc.encoder[0], MLLAIntraScale) and not isinstance(enc.encoder[1], MLLAIntraScale)
    assert "encoder.0.layers.0.attn.qk.weight" in enc.state_dict()
    feats = [torch.randn(1, 32, 16, 24), torch.randn(1, 64, 8, 12), torch.randn(1, 128, 4, 6)]
    with torch.no_grad():
        outs = enc(feats)
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 24), (1, 64, 8, 12), (1, 64, 4, 6)]
    all_mlla = HybridEncoder([32, 64, 128], [8, 16, 32], hidden_dim=64, use_encoder_idx=(0, 1, 2), nhead=4,
                             dim_feedforward=128, attention="mlla").train()
    sum(o.sum() for o in all_mlla(feats)).backward()
    assert all(p.grad is not None for p in all_mlla.encoder.parameters())


def test_cost_grows_linearly_with_tokens():
    """Multiply-adds (fvcore) for 640 -> 1280 inputs (20x20 -> 40x40 stride-32 tokens) grow 4x.
    (Wall-clock timing against softmax attention lives in tools/benchmark.py, not in tests.)"""
    from fvcore.nn import FlopCountAnalysis

    def macs(block, side):
        fc = FlopCountAnalysis(block.eval(), torch.randn(1, 256, side, side))
        fc.unsupported_ops_warnings(False)
        fc.uncalled_modules_warnings(False)
        return fc.total()

    mlla = INTRA_SCALE_BLOCKS.get("mlla")(256, 8, 1024, 0.0, "gelu", 1)
    assert math.isclose(macs(mlla, 40) / macs(mlla, 20), 4.0, rel_tol=1e-3)
    assert math.isclose(macs(mlla, 80) / macs(mlla, 20), 16.0, rel_tol=1e-3)


def test_mlla_recipes_load():
    """Every MLLA recipe loads; encoder variants select "mlla" on the intended levels."""
    from pathlib import Path

    from mlla_rtdetr.engine import load_config

    cfg_dir = Path(__file__).resolve().parents[1] / "projects" / "mlla_rtdetr" / "configs"
    expect = {
        "mlla_rtdetr_t_6x_coco.py": ("MLLABackbone", "softmax", [2]),
        "mlla_rtdetr_s_6x_coco.py": ("MLLABackbone", "softmax", [2]),
        "mlla_rtdetr_b_6x_coco.py": ("MLLABackbone", "softmax", [2]),
        "mlla_rtdetr_t_mllaenc_s5_6x_coco.py": ("MLLABackbone", ["mlla"], [2]),
        "mlla_rtdetr_t_mllaenc_s4s5_6x_coco.py": ("MLLABackbone", ["mlla", "mlla"], [1, 2]),
        "mlla_enc_r18vd_s5_120e_coco.py": ("PResNet", ["mlla"], [2]),
        "mlla_enc_r18vd_s4s5_120e_coco.py": ("PResNet", ["mlla", "mlla"], [1, 2]),
        "mlla_enc_r50vd_s5_6x_coco.py": ("PResNet", ["mlla"], [2]),
        "mlla_enc_r50vd_s4s5_6x_coco.py": ("PResNet", ["mlla", "mlla"], [1, 2]),
        "mlla_rtdetr_tiny_synthetic.py": ("MLLABackbone", ["mlla"], [2]),
        "mlla_rtdetr_demo_synthetic.py": ("MLLABackbone", ["mlla"], [2]),
        # placements beyond the encoder (tests/test_placements.py checks them in detail)
        "mlla_fusion_r18vd_120e_coco.py": ("PResNet", "softmax", [2]),
        "mlla_hybrid_r18vd_120e_coco.py": ("PResNet", "softmax", [2]),
        "mlla_attn_r18vd_120e_coco.py": ("PResNet", "softmax", [2]),
        "mlla_hybrid_enc_s5_r18vd_120e_coco.py": ("PResNet", ["mlla"], [2]),
        "mlla_hybrid_enc_s4s5_r18vd_120e_coco.py": ("PResNet", ["mlla", "mlla"], [1, 2]),
        # on D-FINE / DEIM (tests/test_placements.py checks them at their baselines' cost)
        "mlla_deim_dfine_hgnetv2_s_coco.py": ("HGNetv2", ["mlla"], [2]),
        "mlla_deim_rtdetrv2_r18vd_120e_coco.py": ("PResNet", ["mlla"], [2]),
    }
    assert sorted(p.name for p in cfg_dir.glob("mlla*.py")) == sorted(expect)
    for name, (backbone, attention, levels) in expect.items():
        cfg = load_config(str(cfg_dir / name))
        assert cfg.model.backbone._target_.__name__ == backbone, name
        got = cfg.model.encoder.attention
        assert (got if isinstance(got, str) else list(got)) == attention, name
        assert list(cfg.model.encoder.use_encoder_idx) == levels, name
        if name != "mlla_rtdetr_demo_synthetic.py":  # the main job writes to ./output/demo (make demo)
            assert cfg.train.output_dir.endswith(name[:-3]), name
        if backbone == "MLLABackbone":
            width = cfg.model.backbone.embed_dim
            assert list(cfg.model.encoder.in_channels) == [2 * width, 4 * width, 8 * width], name
