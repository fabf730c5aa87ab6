"""D-FINE pieces on tiny inputs: the weighting function, the FDR round trip, the GO-LSD union of
matches, the wider training-only layers (``layer_scale``) with every loss term, and deploy()."""
import torch

from mlla_rtdetr.modeling import DFINETransformer, HungarianMatcher, RTDETRCriterion
from mlla_rtdetr.modeling.criterion import union_of_matches
from mlla_rtdetr.modeling.decoder.fdr import box_to_distance, distance_to_box, weighting_function


def test_weighting_function_shape_and_bounds():
    w = weighting_function(32, torch.tensor([0.5]), torch.tensor([4.0]))
    assert w.shape == (33,) and float(w[16]) == 0.0
    assert torch.allclose(w[[0, 1, 31, 32]], torch.tensor([-4.0, -2.0, 2.0, 4.0]))  # +-up*rs, +-2*up*rs
    assert torch.all(w[1:] > w[:-1]) and torch.allclose(w, -w.flip(0))


def test_box_to_distance_inverts_distance_to_box():
    up, rs = torch.tensor([0.5], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)
    ref = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]], dtype=torch.float64)
    tgt = torch.tensor([[0.45, 0.37, 0.58, 0.66], [0.26, 0.56, 0.33, 0.66]], dtype=torch.float64)  # xyxy
    index, w_right, w_left = box_to_distance(ref, tgt, 32, rs, up)
    w = weighting_function(32, up, rs)
    left = index.long()
    dist = (w[left] * w_left + w[left + 1] * w_right).reshape(2, 4)  # the interpolated bin values
    back = distance_to_box(ref, dist, rs)
    assert torch.allclose(back, torch.tensor([[0.515, 0.515, 0.13, 0.29], [0.295, 0.61, 0.07, 0.1]],
                                             dtype=torch.float64), atol=1e-12)


def test_union_of_matches_keeps_each_querys_most_frequent_target():
    t = torch.tensor
    main = [(t([3, 1]), t([1, 0]))]
    others = [[(t([3, 2]), t([0, 1]))], [(t([3, 5]), t([0, 1]))]]
    rows, cols = union_of_matches(main, others)[0]
    assert dict(zip(rows.tolist(), cols.tolist())) == {3: 0, 1: 0, 2: 1, 5: 1}


def test_wide_training_layers_all_losses_and_deploy():
    torch.manual_seed(0)
    dec = DFINETransformer(num_classes=5, hidden_dim=32, num_queries=10, feat_channels=[32, 32], feat_strides=[16, 32],
                           num_levels=2, num_points=[2, 2], nhead=4, num_layers=3, dim_feedforward=64,
                           num_denoising=4, eval_idx=0, layer_scale=2, activation="silu", mlp_act="silu")
    assert dec.decoder.layers[0].linear1.in_features == 32 and dec.decoder.layers[1].linear1.in_features == 64
    assert dec.dec_bbox_head[2].layers[0].in_features == 64
    for head in dec.dec_bbox_head:  # zero-initialised: every layer would predict the same (no DDF)
        torch.nn.init.normal_(head.layers[-1].weight, std=0.05)
    feats = [torch.randn(1, 32, 8, 8), torch.randn(1, 32, 4, 4)]
    targets = [{"labels": torch.tensor([1, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.2]])}]
    dec.train()
    out = dec(feats, targets)
    assert out["pred_corners"].shape == (1, 10, 4 * 33) and len(out["aux_outputs"]) == 2
    weights = {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5}
    crit = RTDETRCriterion(5, HungarianMatcher(), weights, ["mal", "boxes", "local"], gamma=1.5, use_uni_set=True)
    losses = crit(out, targets)
    per_output = {"": "mal bbox giou fgl", "_aux_0": "mal bbox giou fgl ddf", "_aux_1": "mal bbox giou fgl ddf",
                  "_pre": "mal bbox giou", "_enc_0": "mal bbox giou", "_dn_0": "mal bbox giou fgl ddf",
                  "_dn_1": "mal bbox giou fgl ddf", "_dn_2": "mal bbox giou fgl", "_dn_pre": "mal bbox giou"}
    assert set(losses) == {f"loss_{n}{s}" for s, names in per_output.items() for n in names.split()}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert dec.decoder.layers[2].linear1.weight.grad is not None and dec.up.grad is None

    dec.eval()
    with torch.no_grad():
        before = dec(feats)
        dec.deploy()
        after = dec(feats)
    assert len(dec.decoder.layers) == 1 and len(dec.dec_bbox_head) == 1
    assert torch.equal(before["pred_logits"], after["pred_logits"]) and torch.equal(before["pred_boxes"], after["pred_boxes"])
