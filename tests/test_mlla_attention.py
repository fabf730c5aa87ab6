"""MLLA linear attention and 2D RoPE: formulas against direct evaluations."""
import math

import pytest
import torch
import torch.nn.functional as F

from mlla_rtdetr.modeling.layers import (
    LinearAttention,
    MLLABlock,
    apply_rope,
    mlla_linear_attention,
    rope_tables,
)


def _official_rope(x, h, w):
    """Reference RoPE written with complex numbers straight from the published formula."""
    c = x.shape[-1]
    k_max = c // 4
    theta = 1.0 / (10000 ** (torch.arange(k_max, dtype=torch.float64) / k_max))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    angles = torch.cat([ys[..., None] * theta, xs[..., None] * theta], dim=-1).reshape(h * w, c // 2)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], c // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


def test_rope_matches_complex_formula():
    g = torch.Generator().manual_seed(0)
    h, w, c = 5, 7, 16
    x = torch.randn(2, h * w, c, generator=g)
    cos2, sin2 = rope_tables(h, w, c)
    assert cos2.shape == sin2.shape == (h * w, c)
    torch.testing.assert_close(apply_rope(x, cos2, sin2).double(), _official_rope(x, h, w),
                               atol=1e-5, rtol=1e-5)


def test_rope_rows_first_half_columns_second_half():
    h, w, c = 4, 6, 16
    x = torch.randn(1, h * w, c)
    rot = apply_rope(x, *rope_tables(h, w, c)).view(h, w, c)
    xv = x.view(h, w, c)
    # Column 0: only the row rotation acts -> second half of the channels unchanged.
    torch.testing.assert_close(rot[:, 0, c // 2:], xv[:, 0, c // 2:])
    # Row 0: only the column rotation acts -> first half unchanged.
    torch.testing.assert_close(rot[0, :, : c // 2], xv[0, :, : c // 2])
    assert not torch.allclose(rot[1:, 0, : c // 2], xv[1:, 0, : c // 2])


def test_rope_scores_depend_only_on_offsets():
    """<R(p) q, R(p') k> is a function of p - p' (RoPE's relative-position property)."""
    h, w, c = 6, 5, 32
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(c, generator=g, dtype=torch.float64), torch.randn(c, generator=g, dtype=torch.float64)
    cos2, sin2 = (t.double() for t in rope_tables(h, w, c))
    qr = apply_rope(q.expand(1, h * w, c), cos2, sin2)[0]
    kr = apply_rope(k.expand(1, h * w, c), cos2, sin2)[0]
    scores = qr @ kr.T  # (N, N)
    pos = [(y, x) for y in range(h) for x in range(w)]
    by_offset = {}
    for i, (yi, xi) in enumerate(pos):
        for j, (yj, xj) in enumerate(pos):
            by_offset.setdefault((yi - yj, xi - xj), []).append(scores[i, j].item())
    assert len(by_offset) == (2 * h - 1) * (2 * w - 1)
    for vals in by_offset.values():
        assert max(vals) - min(vals) < 1e-5  # float32 tables
    # and it does depend on the offset
    assert len({round(v[0], 6) for v in by_offset.values()}) > 10


def test_rope_tables_cached_and_grad_safe():
    with torch.inference_mode():
        a = rope_tables(9, 11, 8)
    b = rope_tables(9, 11, 8)
    assert a[0] is b[0]
    assert not a[0].is_inference()
    x = torch.randn(1, 99, 8, requires_grad=True)
    apply_rope(x, *b).sum().backward()  # tables created under inference_mode can be saved for backward
    assert x.grad is not None
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_tables(2, 2, 6)


def _direct_quadratic(q, k, v, q_rope, k_rope, heads):
    """O(N^2) evaluation of the same kernel: out_i = sum_j (q_rope_i.k_rope_j) v_j / N / (q_i . mean_j k_j + eps)."""
    b, n, c = q.shape
    d = c // heads
    out = torch.empty(b, n, c, dtype=torch.float64)
    for hd in range(heads):
        s = slice(hd * d, (hd + 1) * d)
        a = q_rope[..., s].double() @ k_rope[..., s].double().transpose(1, 2) / n  # (B, N, N)
        z = q[..., s].double() @ k[..., s].double().mean(1, keepdim=True).transpose(1, 2) + 1e-6
        out[..., s] = (a @ v[..., s].double()) / z
    return out


@pytest.mark.parametrize("heads", [1, 4])
def test_linear_attention_equals_quadratic_form(heads):
    g = torch.Generator().manual_seed(2)
    b, h, w, c = 2, 3, 5, 16
    n = h * w
    q = F.elu(torch.randn(b, n, c, generator=g)) + 1
    k = F.elu(torch.randn(b, n, c, generator=g)) + 1
    v = torch.randn(b, n, c, generator=g)
    cos2, sin2 = rope_tables(h, w, c)
    qr, kr = apply_rope(q, cos2, sin2), apply_rope(k, cos2, sin2)
    got = mlla_linear_attention(q, k, v, qr, kr, heads)
    torch.testing.assert_close(got.double(), _direct_quadratic(q, k, v, qr, kr, heads), atol=1e-5, rtol=1e-4)


def test_attention_module_composition():
    """LinearAttention = qk projection -> ELU+1 -> RoPE -> linear attention (v = input) + LePE(v)."""
    torch.manual_seed(0)
    h, w, c, heads = 3, 4, 16, 2
    attn = LinearAttention(c, heads).eval()
    x = torch.randn(2, h * w, c)
    q, k = attn.qk(x).chunk(2, dim=-1)
    q, k = F.elu(q) + 1, F.elu(k) + 1
    cos2, sin2 = rope_tables(h, w, c)
    ref = _direct_quadratic(q, k, x, apply_rope(q, cos2, sin2), apply_rope(k, cos2, sin2), heads)
    lepe = attn.lepe(x.transpose(1, 2).reshape(2, c, h, w)).flatten(2).transpose(1, 2)
    with torch.no_grad():
        got = attn(x, (h, w))
    torch.testing.assert_close(got.double(), ref + lepe.double(), atol=1e-5, rtol=1e-4)
    # The (H, W) layout matters: a transposed grid gives different positions.
    with torch.no_grad():
        assert not torch.allclose(attn(x, (w, h)), got)
    with pytest.raises(ValueError, match="tokens"):
        attn(x, (h, w + 1))


def test_block_gradients_reach_every_parameter():
    torch.manual_seed(0)
    blk = MLLABlock(32, 4, drop_path=0.1).train()
    x = torch.randn(2, 5 * 7, 32, requires_grad=True)
    blk(x, (5, 7)).square().mean().backward()
    for name, p in blk.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_attention_keeps_float32_core_under_autocast():
    torch.manual_seed(0)
    blk = MLLABlock(32, 4).eval()
    x = torch.randn(1, 6 * 6, 32)
    with torch.no_grad():
        ref = blk(x, (6, 6))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = blk(x, (6, 6))
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_linear_cost_in_tokens():
    """The attention's multiply-adds grow linearly with the number of tokens (fvcore count)."""
    from fvcore.nn import FlopCountAnalysis

    attn = LinearAttention(64, 4).eval()

    def macs(side):
        fc = FlopCountAnalysis(attn, (torch.randn(1, side * side, 64), (side, side)))
        fc.unsupported_ops_warnings(False)
        return fc.total()

    small, big = macs(8), macs(16)
    assert math.isclose(big / small, 4.0, rel_tol=1e-3)
