"""Hungarian matcher and RT-DETR criterion (VFL, L1, GIoU, aux / dn / enc losses)."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from rtdetr_model_utils import WEIGHTS, make_targets, tiny_criterion

from mlla_rtdetr.modeling import HungarianMatcher, RTDETRCriterion
from mlla_rtdetr.modeling.criterion import paired_box_iou


def _logits_for(labels, num_classes=4, high=4.0):
    logits = torch.full((len(labels), num_classes), -4.0)
    for i, c in enumerate(labels):
        logits[i, c] = high
    return logits


def test_matcher_hand_made_assignment():
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.3, 0.3]])
    outputs = {"pred_logits": _logits_for([0, 1, 2])[None], "pred_boxes": boxes[None]}
    targets = [{"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.71, 0.7, 0.2, 0.2], [0.2, 0.21, 0.1, 0.1]])}]
    ((rows, cols),) = HungarianMatcher()(outputs, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}
    assert rows.dtype == torch.int64


def test_matcher_class_cost_can_override_boxes():
    # two identical boxes; only the class decides
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 2)
    outputs = {"pred_logits": _logits_for([3, 2])[None], "pred_boxes": boxes[None]}
    targets = [{"labels": torch.tensor([2]), "boxes": boxes[:1]}]
    ((rows, cols),) = HungarianMatcher()(outputs, targets)
    assert rows.tolist() == [1] and cols.tolist() == [0]


def test_matcher_focal_cost_formula_and_empty_targets():
    m = HungarianMatcher(cost_class=2.0, cost_bbox=0.0, cost_giou=0.0, alpha=0.25, gamma=2.0)
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]])
    cost = m.cost_matrix(logits, torch.rand(2, 4) * 0.3 + 0.2, torch.tensor([1]), torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    p = torch.sigmoid(logits[:, 1])
    pos = 0.25 * (1 - p) ** 2 * -torch.log(p + 1e-8)
    neg = 0.75 * p**2 * -torch.log(1 - p + 1e-8)
    assert torch.allclose(cost[:, 0], 2 * (pos - neg))
    outputs = {"pred_logits": torch.zeros(2, 3, 4), "pred_boxes": torch.full((2, 3, 4), 0.5)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
    ]
    idx = m(outputs, targets)
    assert [len(i) for i, _ in idx] == [0, 1]
    with pytest.raises(ValueError, match="all be 0"):
        HungarianMatcher(0, 0, 0)


def test_vfl_matches_direct_formula():
    torch.manual_seed(0)
    crit = RTDETRCriterion(3, HungarianMatcher(), {"loss_vfl": 1.0}, ["vfl"], alpha=0.75, gamma=2.0)
    logits = torch.randn(2, 4, 3)
    boxes = torch.rand(2, 4, 4) * 0.3 + 0.2
    targets = [
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2]])},
        {"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.4, 0.4, 0.3, 0.2], [0.6, 0.5, 0.2, 0.3]])},
    ]
    indices = [(torch.tensor([1]), torch.tensor([0])), (torch.tensor([3, 0]), torch.tensor([1, 0]))]
    num_boxes = 3.0
    loss = crit.loss_vfl({"pred_logits": logits, "pred_boxes": boxes}, targets, indices, num_boxes, 3)["loss_vfl"]

    def iou(a, b):  # cxcywh
        ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
        bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
        iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
        inter = iw * ih
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    total = 0.0
    for b in range(2):
        matched = {int(q): int(t) for q, t in zip(*indices[b])}
        for q in range(4):
            for c in range(3):
                x = float(logits[b, q, c])
                p = 1 / (1 + torch.exp(torch.tensor(-x, dtype=torch.float64))).item()
                is_pos = q in matched and int(targets[b]["labels"][matched[q]]) == c
                t = iou(boxes[b, q].tolist(), targets[b]["boxes"][matched[q]].tolist()) if is_pos else 0.0
                w = 0.75 * p**2 * (0 if is_pos else 1) + t
                bce = -(t * torch.log(torch.tensor(p)) + (1 - t) * torch.log(torch.tensor(1 - p))).item()
                total += w * bce
    assert loss.item() == pytest.approx(total / num_boxes, rel=1e-5)


def test_box_losses_known_values():
    crit = tiny_criterion(3)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]]])
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.4, 0.3, 0.2, 0.2]])}]
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    out = crit.loss_boxes({"pred_logits": torch.zeros(1, 2, 3), "pred_boxes": boxes}, targets, indices, 2.0, 3)
    assert out["loss_bbox"].item() == pytest.approx(0.1 / 2, abs=1e-6)
    # second pair: IoU = 0.02/0.06 = 1/3, hull = union, GIoU = 1/3 -> loss 2/3; first pair 0
    assert out["loss_giou"].item() == pytest.approx((2 / 3) / 2, abs=1e-5)
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert paired_box_iou(a, torch.tensor([[1.0, 1.0, 3.0, 3.0]])).item() == pytest.approx(1 / 7)


def _outputs(batch, q=6, k=3, d=4, requires_grad=False):
    g = torch.Generator().manual_seed(1)

    def pair(n):
        return {
            "pred_logits": torch.randn(batch, n, k, generator=g).requires_grad_(requires_grad),
            "pred_boxes": (torch.rand(batch, n, 4, generator=g) * 0.4 + 0.2).requires_grad_(requires_grad),
        }

    out = pair(q)
    out["aux_outputs"] = [pair(q)]
    out["enc_aux_outputs"] = [pair(q)]
    out["enc_meta"] = {"class_agnostic": False}
    return out


def test_criterion_keys_weights_and_zero_gt_image():
    crit = tiny_criterion(3)
    out = _outputs(2)
    targets = [
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]
    # denoising: one group of [pos, neg] for the single GT, padded for the empty image
    out["dn_aux_outputs"] = [{"pred_logits": torch.randn(2, 2, 3), "pred_boxes": torch.rand(2, 2, 4) * 0.3 + 0.3}]
    out["dn_meta"] = {
        "dn_positive_idx": (torch.tensor([0]), torch.zeros(0, dtype=torch.int64)),
        "dn_num_group": 1,
        "dn_num_split": [2, 6],
    }
    losses = crit(out, targets)
    assert set(losses) == {f"loss_{n}{s}" for n in ("vfl", "bbox", "giou") for s in ("", "_aux_0", "_enc_0", "_dn_0")}
    assert all(torch.isfinite(v) for v in losses.values())
    unweighted = RTDETRCriterion(3, crit.matcher, {k: 1.0 for k in WEIGHTS}, ["vfl", "boxes"], 0.75, 2.0)(out, targets)
    for k, v in losses.items():
        base = k.split("_")[1]
        assert v.item() == pytest.approx(unweighted[k].item() * WEIGHTS[f"loss_{base}"], rel=1e-6)
    # all-empty batch: box losses are exactly zero, classification pushes scores down
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    losses = crit(_outputs(2), empty)
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0 and losses["loss_vfl"].item() > 0


def test_cdn_indices_and_num_boxes():
    targets = make_targets((2, 0, 1))
    meta = {
        "dn_positive_idx": (torch.tensor([0, 1, 6, 7]), torch.zeros(0, dtype=torch.int64), torch.tensor([0, 6])),
        "dn_num_group": 2,
    }
    idx = RTDETRCriterion.get_cdn_matched_indices(meta, targets)
    assert idx[0][1].tolist() == [0, 1, 0, 1] and len(idx[1][0]) == 0 and idx[2][1].tolist() == [0, 0]
    crit = tiny_criterion(5)
    assert crit.num_boxes(targets, "cpu") == 3.0
    assert crit.num_boxes(make_targets((0,)), "cpu") == 1.0  # clamped
    with pytest.raises(ValueError, match="Unknown losses"):
        RTDETRCriterion(3, HungarianMatcher(), WEIGHTS, ["vfl", "masks"])


def test_focal_and_iou_weighted_variants():
    crit = RTDETRCriterion(
        3,
        HungarianMatcher(),
        {"loss_focal": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        ["focal", "boxes"],
        alpha=0.25,
        gamma=2.0,
        boxes_weight_format="iou",
    )
    targets = make_targets((2, 1), num_classes=3)
    losses = crit(_outputs(2, requires_grad=True), targets)
    assert "loss_focal" in losses and "loss_focal_enc_0" in losses
    sum(losses.values()).backward()


def _dist_worker(rank, world, port, results):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        crit = tiny_criterion(5)
        targets = make_targets((1, 2) if rank == 0 else (1,))  # 3 boxes on rank 0, 1 on rank 1
        results[rank] = crit.num_boxes(targets, "cpu")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_num_boxes_all_reduced_across_processes():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_dist_worker, args=(2, port, results), nprocs=2, join=True)
    assert dict(results) == {0: 2.0, 1: 2.0}  # (3 + 1) / 2 on both ranks
