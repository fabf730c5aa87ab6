"""RT-DETR decoder pieces: anchors, deformable attention, denoising groups, query selection,
box refinement, eval_idx and gradient flow."""

import math

import pytest
import torch

from rtdetr_model_utils import make_targets, random_feats, tiny_criterion, tiny_decoder

from mlla_rtdetr.modeling.decoder import (
    MSDeformableAttention,
    build_denoising_attn_mask,
    deformable_attention_core,
    generate_anchors,
    get_contrastive_denoising_training_group,
    inverse_sigmoid,
)


# ----------------------------------------------------------------------------- anchors
def test_anchors_match_fixture_exactly(parity_dir):
    derived = torch.load(parity_dir / "fixtures" / "rtdetrv2_r18vd.expected.pt", weights_only=True)["derived"]
    dec = tiny_decoder(eval_spatial_size=(640, 640))
    anchors, valid = dec.get_anchors(dec.eval_spatial_shapes(), "cpu")
    assert dec.eval_spatial_shapes() == [(80, 80), (40, 40), (20, 20)]
    assert anchors.dtype == torch.float32 and valid.dtype == torch.bool
    # log(a / (1 - a)) in float32: exact on the CPU that made the fixture, within an ulp elsewhere
    # (the vectorized log of AVX-512, AVX2 and generic kernels rounds differently)
    expected = derived["decoder.anchors"]
    assert torch.equal(torch.isinf(anchors), torch.isinf(expected))
    finite = torch.isfinite(expected)
    torch.testing.assert_close(anchors[finite], expected[finite], rtol=2.5e-7, atol=0)
    assert torch.equal(valid, derived["decoder.valid_mask"])
    assert int((~valid).sum()) == 316


def test_anchors_formula_and_cache_per_size():
    anchors, valid = generate_anchors([(2, 3), (1, 2)])
    # level 0, row y=1, column x=2: center ((2+0.5)/3, (1+0.5)/2), size 0.05
    a = torch.tensor([2.5 / 3, 1.5 / 2, 0.05, 0.05])
    assert torch.allclose(anchors[0, 5], torch.log(a / (1 - a)))
    assert valid.shape == (1, 8, 1) and valid.all()
    dec = tiny_decoder()
    first = dec.get_anchors([(8, 8), (4, 4), (2, 2)], "cpu")
    assert dec.get_anchors([(8, 8), (4, 4), (2, 2)], "cpu")[0] is first[0]  # cached
    assert dec.get_anchors([(10, 8), (5, 4), (3, 2)], "cpu")[0].shape == (1, 80 + 20 + 6, 4)
    # derived buffers are never part of a checkpoint
    assert not any(k.endswith(("anchors", "valid_mask", "num_points_scale")) for k in dec.state_dict())


# ----------------------------------------------------------------------------- deformable attention
def _naive_bilinear(value, x, y):
    """value (C, H, W); x, y normalized in [0, 1] (align_corners=False, zero padding)."""
    c, h, w = value.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(c, dtype=torch.float64)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * value[:, yy, xx].double()
    return out


def test_deformable_core_matches_naive_sampling():
    g = torch.Generator().manual_seed(0)
    shapes, points, heads, hd, bs, lq = [(4, 5), (2, 3)], [2, 3], 2, 3, 2, 4
    value = torch.randn(bs, sum(h * w for h, w in shapes), heads, hd, generator=g)
    loc = torch.rand(bs, lq, heads, sum(points), 2, generator=g) * 1.2 - 0.1  # some outside [0, 1]
    attw = torch.softmax(torch.randn(bs, lq, heads, sum(points), generator=g), -1)
    out = deformable_attention_core(value, shapes, loc, attw, points)
    assert out.shape == (bs, lq, heads * hd)
    starts = [0, shapes[0][0] * shapes[0][1]]
    for b in range(bs):
        for q in range(lq):
            for m in range(heads):
                acc = torch.zeros(hd, dtype=torch.float64)
                p = 0
                for lvl, (h, w) in enumerate(shapes):
                    v = value[b, starts[lvl] : starts[lvl] + h * w, m].T.reshape(hd, h, w)
                    for _ in range(points[lvl]):
                        x, y = loc[b, q, m, p].tolist()
                        acc += attw[b, q, m, p].double() * _naive_bilinear(v, x, y)
                        p += 1
                assert torch.allclose(out[b, q, m * hd : (m + 1) * hd].double(), acc, atol=1e-5)


def test_deformable_discrete_is_nearest_pixel():
    value = torch.arange(2 * 12, dtype=torch.float32).reshape(1, 12, 1, 2)  # one level 3x4, 1 head
    loc = torch.tensor([[[[[0.1, 0.1], [0.9, 0.6]]]]])  # (1, 1, 1, 2, 2)
    attw = torch.tensor([[[[1.0, 0.0]]]])
    out = deformable_attention_core(value, [(3, 4)], loc, attw, [2], method="discrete")
    # x=0.1*4+0.5 -> 0, y=0.1*3+0.5 -> 0: token 0
    assert torch.equal(out[0, 0], value[0, 0, 0])
    attw = torch.tensor([[[[0.0, 1.0]]]])
    out = deformable_attention_core(value, [(3, 4)], loc, attw, [2], method="discrete")
    assert torch.equal(out[0, 0], value[0, 2 * 4 + 3, 0])  # x=int(4.1)=4 clamped to 3, y=int(2.3)=2


def test_msdeform_attention_points_and_init():
    attn = MSDeformableAttention(32, 4, 3, [2, 3, 4])
    assert torch.allclose(attn.num_points_scale, torch.tensor([1 / 2] * 2 + [1 / 3] * 3 + [1 / 4] * 4))
    assert attn.sampling_offsets.out_features == 4 * 9 * 2 and attn.attention_weights.out_features == 4 * 9
    bias = attn.sampling_offsets.bias.view(4, 9, 2)
    assert torch.allclose(bias[0, :, 0], torch.tensor([1.0, 2, 1, 2, 3, 1, 2, 3, 4]))  # head 0 points along +x
    feats = [torch.randn(2, 32, s, s) for s in (8, 4, 2)]
    value = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
    ref = torch.rand(2, 5, 1, 4)
    out = attn(torch.randn(2, 5, 32), ref, value, [(8, 8), (4, 4), (2, 2)])
    assert out.shape == (2, 5, 32)
    with pytest.raises(ValueError, match="num_points"):
        MSDeformableAttention(32, 4, 3, [2, 3])
    with pytest.raises(ValueError, match="v1"):
        tiny_decoder(version="v1", num_points=(2, 3, 4))


# ----------------------------------------------------------------------------- denoising
def test_denoising_groups_and_mask_structure():
    targets = make_targets((2, 3), num_classes=5)
    embed = torch.nn.Embedding(6, 8, padding_idx=5)
    torch.manual_seed(0)
    contents, ref, mask, meta = get_contrastive_denoising_training_group(
        targets, 5, num_queries=7, class_embed=embed, num_denoising=20, label_noise_ratio=0.5, box_noise_scale=1.0
    )
    max_gt, groups = 3, 20 // 3
    d = 2 * max_gt * groups
    assert meta["dn_num_group"] == groups and meta["dn_num_split"] == [d, 7]
    assert contents.shape == (2, d, 8) and ref.shape == (2, d, 4) and mask.shape == (d + 7, d + 7)
    # positives: the first n_i entries of each group's positive half
    assert meta["dn_positive_idx"][0].tolist() == [g * 6 + j for g in range(groups) for j in range(2)]
    assert meta["dn_positive_idx"][1].tolist() == [g * 6 + j for g in range(groups) for j in range(3)]
    # mask: matching queries never see denoising ones; groups only see themselves
    assert mask[d:, :d].all() and not mask[:, d:].any()
    group = torch.arange(d) // 6
    assert torch.equal(mask[:d, :d], group[:, None] != group[None, :])
    assert torch.equal(build_denoising_attn_mask(d, 7, 6), mask)
    # padded slot (image 0 has 2 GT, slot 2 of each half) keeps the zero padding embedding
    assert torch.equal(contents[0, 2], torch.zeros(8)) and torch.equal(contents[0, 5], torch.zeros(8))


def test_denoising_box_noise_ranges():
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]])}]
    embed = torch.nn.Embedding(4, 8, padding_idx=3)
    _, ref, _, meta = get_contrastive_denoising_training_group(targets, 3, 5, embed, num_denoising=200)
    boxes = torch.sigmoid(ref[0]).view(-1, 2, 4)  # (group, pos/neg, cxcywh)
    gt_xyxy = torch.tensor([0.4, 0.3, 0.6, 0.7])
    half = torch.tensor([0.1, 0.2, 0.1, 0.2])

    def shift(b):
        xyxy = torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
        return (xyxy - gt_xyxy).abs() / half

    pos, neg = shift(boxes[:, 0]), shift(boxes[:, 1])
    assert (pos <= 1 + 1e-4).all()  # positives: corners move by less than half the size
    # negatives: corners move by 1x..2x half the size (boxes whose corners crossed collapse to ~0 size)
    kept = (boxes[:, 1, 2:] > 1e-3).all(1)
    assert kept.sum() > 10
    assert (neg[kept] >= 1 - 1e-4).all() and (neg[kept] <= 2 + 1e-4).all()


def test_denoising_rng_draws_match_official_sequence():
    targets = make_targets((2,), num_classes=80)
    embed = torch.nn.Embedding(81, 8, padding_idx=80)
    torch.manual_seed(0)
    get_contrastive_denoising_training_group(targets, 80, 300, embed, num_denoising=100)
    after = torch.get_rng_state()
    torch.manual_seed(0)
    torch.rand((1, 200))
    torch.randint(0, 80, (1, 200), dtype=torch.int32)
    torch.randint(0, 2, (1, 200, 4)).float()
    torch.rand((1, 200, 4))
    assert torch.equal(after, torch.get_rng_state())


def test_denoising_without_any_ground_truth():
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    embed = torch.nn.Embedding(6, 8, padding_idx=5)
    contents, ref, mask, meta = get_contrastive_denoising_training_group(targets, 5, 7, embed, num_denoising=20)
    assert contents.shape == (2, 2, 8) and ref.shape == (2, 2, 4) and torch.isfinite(ref).all()
    assert meta["dn_num_group"] == 1 and [len(p) for p in meta["dn_positive_idx"]] == [0, 0]
    assert mask.shape == (9, 9)


# ----------------------------------------------------------------------------- decoder
def test_decoder_train_outputs_and_gradient_flow():
    torch.manual_seed(0)
    dec = tiny_decoder(num_classes=5)
    crit = tiny_criterion(5)
    with torch.no_grad():  # the default init zeroes the last box layers, which blocks earlier gradients
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    dec.train()
    feats = random_feats(2)
    targets = make_targets((2, 3))
    out = dec(feats, targets)
    assert out["pred_logits"].shape == (2, 20, 5) and out["pred_boxes"].shape == (2, 20, 4)
    assert len(out["aux_outputs"]) == 2 and len(out["enc_aux_outputs"]) == 1 and len(out["dn_aux_outputs"]) == 3
    d = out["dn_meta"]["dn_num_split"][0]
    assert out["dn_aux_outputs"][0]["pred_logits"].shape == (2, d, 5)
    losses = crit(out, targets)
    expected = {
        f"loss_{n}{s}"
        for n in ("vfl", "bbox", "giou")
        for s in ["", "_aux_0", "_aux_1", "_enc_0", "_dn_0", "_dn_1", "_dn_2"]
    }
    assert set(losses) == expected
    sum(losses.values()).backward()
    no_grad = [n for n, p in dec.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == [], no_grad


def test_decoder_rejects_bad_inputs():
    dec = tiny_decoder()
    dec.train()
    with pytest.raises(ValueError, match="targets"):
        dec(random_feats(1))
    dec.eval()
    with pytest.raises(ValueError, match="feature maps"):
        dec(random_feats(1)[:2])
    with pytest.raises(ValueError, match="eval_idx"):
        tiny_decoder(num_layers=3, eval_idx=3)


def test_eval_idx_stops_early_and_uses_that_layers_heads():
    torch.manual_seed(0)
    dec = tiny_decoder(num_layers=3).eval()
    feats = random_feats(2)
    hidden, calls = {}, []

    def record(i):
        def hook(module, args, output):
            hidden[i] = output
            calls.append(i)

        return hook

    for i, layer in enumerate(dec.decoder.layers):
        layer.register_forward_hook(record(i))
    ref_in = {}
    dec.decoder.register_forward_pre_hook(lambda m, a: ref_in.update(ref=a[1]))
    with torch.no_grad():
        full = dec(feats)
        assert calls == [0, 1, 2]
        # layer-1 box from the full run: refine layer 0's box with head 1
        box0 = torch.sigmoid(dec.dec_bbox_head[0](hidden[0]) + ref_in["ref"])
        box1 = torch.sigmoid(dec.dec_bbox_head[1](hidden[1]) + inverse_sigmoid(box0))
        logits1 = dec.dec_score_head[1](hidden[1])
        calls.clear()
        dec.decoder.eval_idx = 1
        early = dec(feats)
    assert calls == [0, 1]
    assert torch.allclose(early["pred_logits"], logits1, atol=1e-6)
    assert torch.allclose(early["pred_boxes"], box1, atol=1e-6)
    assert not torch.allclose(early["pred_logits"], full["pred_logits"])


def test_query_selection_takes_top_scores():
    dec = tiny_decoder(num_queries=3)
    logits = torch.tensor([[[0.0, 1.0], [5.0, -1.0], [0.5, 0.2], [-3.0, 4.0], [0.0, 0.0]]])
    assert dec.select_topk(logits, 3).tolist() == [[1, 3, 0]]
    dec.eval()
    feats = random_feats(1)
    captured = {}
    dec.decoder.register_forward_pre_hook(lambda m, a: captured.update(target=a[0], ref=a[1]))
    scores = {}
    dec.enc_score_head.register_forward_hook(lambda m, a, o: scores.update(s=o))
    outputs = {}
    dec.enc_output.register_forward_hook(lambda m, a, o: outputs.update(o=o))
    with torch.no_grad():
        dec(feats)
    top = scores["s"].max(-1).values.topk(3).indices
    assert torch.equal(captured["target"], outputs["o"][0, top[0]].unsqueeze(0))


@pytest.mark.parametrize(
    "options",
    [
        dict(query_select_method="agnostic", learn_query_content=True),
        dict(query_select_method="one2many", cross_attn_method="discrete"),
        dict(num_levels=4, num_points=(2, 2, 2, 2)),
    ],
)
def test_decoder_options_train_and_eval(options):
    torch.manual_seed(0)
    dec = tiny_decoder(**options)
    crit = tiny_criterion(5)
    targets = make_targets((2, 0))
    dec.train()
    out = dec(random_feats(2), targets)
    if options.get("query_select_method") == "agnostic":
        assert out["enc_aux_outputs"][0]["pred_logits"].shape[-1] == 1 and out["enc_meta"]["class_agnostic"]
    losses = crit(out, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    dec.eval()
    with torch.no_grad():
        out = dec(random_feats(2))
    assert out["pred_logits"].shape == (2, 20, 5) and set(out) == {"pred_logits", "pred_boxes"}
