"""RTDETR detectron2 meta-architecture: list[dict] in, losses / Instances out, post-processing."""

import pytest
import torch
from detectron2.structures import Boxes, Instances

from rtdetr_model_utils import tiny_criterion, tiny_decoder, tiny_model

from mlla_rtdetr.modeling import RTDETR, RTDETRPostProcessor


def _inputs(sizes, boxes_per_image, seed=0, orig=None):
    g = torch.Generator().manual_seed(seed)
    batch = []
    for i, ((h, w), boxes) in enumerate(zip(sizes, boxes_per_image)):
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.arange(len(boxes), dtype=torch.int64) % 5
        oh, ow = orig[i] if orig else (h, w)
        batch.append(
            {
                "image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                "instances": inst,
                "height": oh,
                "width": ow,
            }
        )
    return batch


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_training_returns_weighted_losses_including_empty_image(version):
    torch.manual_seed(0)
    model = tiny_model(version=version).train()
    batch = _inputs([(64, 64), (64, 64)], [[[4, 8, 30, 40], [20, 20, 60, 50]], []])
    losses = model(batch)
    suffixes = ["", "_aux_0", "_enc_0", "_dn_0", "_dn_1"]
    assert set(losses) == {f"loss_{n}{s}" for n in ("vfl", "bbox", "giou") for s in suffixes}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.decoder.denoising_class_embed.weight.grad is not None
    # a batch without any box still trains (dummy denoising group, zero box losses)
    model.zero_grad()
    losses = model(_inputs([(64, 64)], [[]]))
    assert losses["loss_bbox"].item() == 0 and torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()


def test_targets_are_normalized_cxcywh():
    model = tiny_model()
    batch = _inputs([(64, 96)], [[[0, 0, 48, 32]]])
    (t,) = model.prepare_targets(batch, (64, 96))
    assert torch.allclose(t["boxes"], torch.tensor([[0.25, 0.25, 0.5, 0.5]]))
    bad = _inputs([(64, 64)], [[[0, 0, 8, 8]]])
    bad[0]["instances"].gt_classes = torch.tensor([7])
    with pytest.raises(ValueError, match="contiguous"):
        model.prepare_targets(bad, (64, 64))


def test_eval_round_trip_matches_raw_path_scaled_to_original_size():
    torch.manual_seed(0)
    model = tiny_model(eval_size=(64, 64)).eval()
    batch = _inputs([(64, 64), (64, 64)], [[], []], orig=[(480, 640), (100, 50)])
    with torch.no_grad():
        results = model(batch)
        images = torch.stack([b["image"].float() / 255 for b in batch])
        raw = model.forward_raw(images)
    assert len(results) == 2
    for i, (res, (oh, ow)) in enumerate(zip(results, [(480, 640), (100, 50)])):
        inst = res["instances"]
        assert inst.image_size == (oh, ow) and len(inst) == 30
        assert torch.all(inst.scores[:-1] >= inst.scores[1:])
        assert inst.pred_classes.min() >= 0 and inst.pred_classes.max() < 5
        scores = torch.sigmoid(raw["pred_logits"][i]).flatten()
        top, idx = scores.topk(30)
        assert torch.allclose(inst.scores, top)
        q = idx // 5
        cx, cy, w, h = raw["pred_boxes"][i, q].unbind(-1)
        expect = torch.stack([(cx - w / 2) * ow, (cy - h / 2) * oh, (cx + w / 2) * ow, (cy + h / 2) * oh], -1)
        expect[:, 0::2] = expect[:, 0::2].clamp(0, ow)
        expect[:, 1::2] = expect[:, 1::2].clamp(0, oh)
        assert torch.allclose(inst.pred_boxes.tensor, expect, atol=1e-3)


def test_eval_pads_mixed_sizes_and_maps_boxes_through_each_input_size():
    torch.manual_seed(0)
    model = tiny_model().eval()
    batch = _inputs([(64, 64), (40, 96)], [[], []], orig=[(128, 128), (80, 192)])
    images, sizes = model.preprocess_image(batch)
    assert images.shape == (2, 3, 64, 96) and sizes == [(64, 64), (40, 96)]
    assert torch.equal(images[1, :, 40:], torch.zeros(3, 24, 96))  # bottom padding
    with torch.no_grad():
        results = model(batch)
        raw = model.forward_raw(images)
    # normalized canvas (64 x 96) coords -> input pixels -> original pixels (per image)
    for i, ((h, w), (oh, ow)) in enumerate(zip(sizes, [(128, 128), (80, 192)])):
        inst = results[i]["instances"]
        assert inst.image_size == (oh, ow)
        q = torch.sigmoid(raw["pred_logits"][i]).flatten().topk(30).indices // 5
        cx, cy, bw, bh = raw["pred_boxes"][i, q].unbind(-1)
        fx, fy = 96 * ow / w, 64 * oh / h
        expect = torch.stack([(cx - bw / 2) * fx, (cy - bh / 2) * fy, (cx + bw / 2) * fx, (cy + bh / 2) * fy], -1)
        expect[:, 0::2] = expect[:, 0::2].clamp(0, ow)
        expect[:, 1::2] = expect[:, 1::2].clamp(0, oh)
        assert torch.allclose(inst.pred_boxes.tensor, expect, atol=1e-3)


def test_num_classes_must_agree():
    base = tiny_model()
    with pytest.raises(ValueError, match="criterion.num_classes=3"):
        RTDETR(base.backbone, base.encoder, tiny_decoder(5), tiny_criterion(3), num_classes=5)
    with pytest.raises(ValueError, match="decoder.num_classes=5"):
        RTDETR(base.backbone, base.encoder, tiny_decoder(5), tiny_criterion(4), num_classes=4)


def test_deploy_keeps_outputs_and_device():
    torch.manual_seed(0)
    model = tiny_model(eval_size=(64, 64)).eval()
    assert model.device == torch.device("cpu")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model.forward_raw(x)
        model.deploy()
        after = model.forward_raw(x)
    assert not model.training
    assert torch.allclose(before["pred_logits"], after["pred_logits"], atol=1e-4)
    assert torch.allclose(before["pred_boxes"], after["pred_boxes"], atol=1e-5)


def test_postprocess_topk_over_queries_and_classes():
    logits = torch.full((1, 3, 2), -5.0)
    logits[0, 2, 1], logits[0, 0, 0], logits[0, 1, 1] = 3.0, 2.0, 1.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.25, 0.5, 0.5, 1.0], [0.1, 0.1, 0.2, 0.2]]])
    post = RTDETRPostProcessor(num_classes=2, num_top_queries=3)
    scores, labels, out_boxes, qidx = post({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[200, 100]]))
    assert torch.allclose(scores[0], torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))
    assert labels[0].tolist() == [1, 0, 1] and qidx[0].tolist() == [2, 0, 1]
    assert torch.allclose(out_boxes[0], torch.tensor([[0.0, 0, 40, 20], [80, 40, 120, 60], [0, 0, 100, 100]]))
    # asking for more than Q*K keeps everything
    scores, *_ = RTDETRPostProcessor(2, 100)({"pred_logits": logits, "pred_boxes": boxes}, torch.tensor([[1, 1]]))
    assert scores.shape == (1, 6)


def test_eval_size_resizes_like_the_official_pipeline():
    torch.manual_seed(0)
    base = tiny_model(eval_size=(64, 64))
    model = RTDETR(
        base.backbone, base.encoder, base.decoder, base.criterion, num_classes=5, num_top_queries=30, eval_size=(64, 64)
    ).eval()
    batch = _inputs([(40, 96)], [[]], orig=[(80, 192)])
    images, sizes = model.preprocess_image(batch)
    assert images.shape == (1, 3, 64, 64) and sizes == [(64, 64)]
    with torch.no_grad():
        inst = model(batch)[0]["instances"]
        raw = model.forward_raw(images)
    q = torch.sigmoid(raw["pred_logits"][0]).flatten().topk(30).indices // 5
    cx, cy = raw["pred_boxes"][0, q, 0], raw["pred_boxes"][0, q, 1]
    centers = inst.pred_boxes.get_centers()
    unclipped = (inst.pred_boxes.tensor[:, 0] > 0) & (inst.pred_boxes.tensor[:, 2] < 192)
    assert torch.allclose(centers[unclipped, 0], (cx * 192)[unclipped], atol=1e-3)
    with pytest.raises(ValueError, match="multiple"):
        RTDETR(base.backbone, base.encoder, base.decoder, base.criterion, num_classes=5, eval_size=(60, 64))
