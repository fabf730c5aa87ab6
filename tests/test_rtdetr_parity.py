"""Binding parity of the RT-DETR detector with the official v1 / v2 models (tests/fixtures/parity).

For every RT-DETR fixture: build our model from the manifest's ``official_config_values``, convert
``make_state(rows, state_seed)`` with the official-checkpoint converter, load it strictly and
compare eval outputs (logits / boxes, max abs diff <= 1e-4), the intermediate summaries, the
post-processed detections (near-tie rule) and the train-mode losses (relative 1e-4; our
denoising consumes the global RNG exactly like the official one, so nothing is injected).
The model runs NCHW, as the official code, and its training forward with PyTorch's linear layers
(the fast CPU training kernels round differently, which moves near-tied matches of these
random-weight fixtures; tests/test_training_parity.py checks them against official training).
"""

import json
import re

import pytest
import torch

from parity_state import check_summary, load_manifest, make_input, make_state, max_abs_diff

from mlla_rtdetr.checkpoint.rtdetr_converter import convert_official_rtdetr
from mlla_rtdetr.modeling import (
    RTDETR,
    HGNetv2,
    HungarianMatcher,
    HybridEncoder,
    PResNet,
    RTDETRCriterion,
    RTDETRPostProcessor,
    RTDETRTransformer,
)
from mlla_rtdetr.modeling.layers import onednn_kernels

CASES = ["rtdetr_v1_r18vd", "rtdetrv2_r18vd", "rtdetrv2_r50vd", "rtdetrv2_hgnetv2_l", "rtdetrv2_r18vd_dsp"]
TOL = 1e-4
STRICT_TOL = 3e-5


def build_official_like(manifest: dict) -> RTDETR:
    cfg = manifest["official_config_values"]
    version = "v1" if manifest["impl"] == "v1" else "v2"
    pr, he = cfg["PResNet"], cfg["HybridEncoder"]
    dec = cfg["RTDETRTransformer" if version == "v1" else "RTDETRTransformerv2"]
    crit = cfg["SetCriterion" if version == "v1" else "RTDETRCriterionv2"]
    eval_size = he.get("eval_spatial_size") or cfg.get("eval_spatial_size")
    if cfg["RTDETR"]["backbone"] == "HGNetv2":  # the YAML's HGNetv2 section: name, freeze_at 0, FrozenBN
        name = re.search(r"hgnetv2_([lxh])_", manifest["official_config"]).group(1).upper()
        backbone = HGNetv2(name, freeze_at=0, freeze_norm=True)
    else:
        backbone = PResNet(
            depth=pr["depth"], variant=pr["variant"], freeze_at=pr["freeze_at"], freeze_norm=pr["freeze_norm"]
        )
    encoder = HybridEncoder(
        in_channels=he["in_channels"],
        feat_strides=he["feat_strides"],
        hidden_dim=he["hidden_dim"],
        use_encoder_idx=he["use_encoder_idx"],
        num_encoder_layers=he["num_encoder_layers"],
        nhead=he["nhead"],
        dim_feedforward=he["dim_feedforward"],
        dropout=he["dropout"],
        enc_act=he["enc_act"],
        expansion=he["expansion"],
        depth_mult=he["depth_mult"],
        act=he["act"],
        eval_spatial_size=eval_size,
    )
    decoder = RTDETRTransformer(
        num_classes=cfg["num_classes"],
        hidden_dim=dec["hidden_dim"],
        num_queries=dec["num_queries"],
        feat_channels=dec["feat_channels"],
        feat_strides=dec["feat_strides"],
        num_levels=dec["num_levels"],
        num_points=dec.get("num_points", 4),
        num_layers=dec.get("num_layers", dec.get("num_decoder_layers")),
        num_denoising=dec["num_denoising"],
        label_noise_ratio=dec.get("label_noise_ratio", 0.5),
        box_noise_scale=dec.get("box_noise_scale", 1.0),
        eval_idx=dec["eval_idx"],
        eval_spatial_size=dec.get("eval_spatial_size", eval_size),
        cross_attn_method=dec.get("cross_attn_method", "default"),
        query_select_method=dec.get("query_select_method", "default"),
        version=version,
    )
    mw = crit["matcher"]["weight_dict"]
    matcher = HungarianMatcher(
        mw["cost_class"],
        mw["cost_bbox"],
        mw["cost_giou"],
        alpha=crit["matcher"]["alpha"],
        gamma=crit["matcher"]["gamma"],
    )
    criterion = RTDETRCriterion(
        cfg["num_classes"], matcher, crit["weight_dict"], crit["losses"], alpha=crit["alpha"], gamma=crit["gamma"]
    )
    return RTDETR(
        backbone,
        encoder,
        decoder,
        criterion,
        num_classes=cfg["num_classes"],
        num_top_queries=cfg["RTDETRPostProcessor"]["num_top_queries"],
    )


class Recorder:
    """Forward hooks collecting the tensors the fixture summarizes (official naming)."""

    def __init__(self, model: RTDETR):
        self.t = {}
        self.handles = []
        dec = model.decoder
        self._hook(model.backbone, lambda o: {f"backbone.{i}": v for i, v in enumerate(o.values())})
        self._hook(model.encoder.encoder[0], lambda o: {"encoder.aifi": o.flatten(2).permute(0, 2, 1)})
        self._hook(model.encoder, lambda o: {f"encoder.{i}": v for i, v in enumerate(o)})
        for i, m in enumerate(dec.input_proj):
            self._hook(m, lambda o, i=i: {f"_proj.{i}": o.flatten(2).permute(0, 2, 1)})
        self._hook(dec.enc_output, lambda o: {"decoder.enc_output": o})
        self._hook(dec.enc_score_head, lambda o: {"decoder.enc_score_head": o})
        for i, layer in enumerate(dec.decoder.layers):
            self._hook(layer, lambda o, i=i: {f"decoder.layers.{i}": o})
        self.handles.append(dec.decoder.register_forward_pre_hook(self._pre_decoder))
        original = dec.select_topk

        def select_topk(logits, k):
            ind = original(logits, k)
            self.t["topk_ind"] = ind
            return ind

        dec.select_topk = select_topk
        self._model = model

    def _hook(self, module, fn):
        self.handles.append(module.register_forward_hook(lambda m, i, o: self.t.update(fn(o))))

    def _pre_decoder(self, module, args):
        self.t["decoder.init_target"] = args[0]
        self.t["decoder.init_ref_points_unact"] = args[1]

    def finish(self):
        for h in self.handles:
            h.remove()
        del self._model.decoder.select_topk
        n = len(self._model.decoder.input_proj)
        self.t["decoder.memory"] = torch.cat([self.t.pop(f"_proj.{i}") for i in range(n)], 1)
        return self.t


def query_alignment(got_ind, exp_ind, valid_mask):
    """Permutation p with got[p] aligned to expected rows: same anchor index, or any invalid anchor
    for rows that come from invalid anchors (identical queries)."""
    got_ind, exp_ind = got_ind.tolist(), exp_ind.tolist()
    valid = valid_mask.flatten()
    pos = {a: i for i, a in enumerate(got_ind)}
    invalid_rows = [i for i, a in enumerate(got_ind) if not valid[a]]
    perm = []
    for a in exp_ind:
        if valid[a]:
            assert a in pos, f"expected query from anchor {a} was not selected"
            perm.append(pos[a])
        else:
            assert invalid_rows, "more invalid-anchor queries expected than selected"
            perm.append(invalid_rows.pop(0))
    return torch.tensor(perm)


@pytest.fixture(scope="module", params=CASES)
def case(request, parity_dir):
    torch.set_num_threads(2)
    name = request.param
    path = parity_dir / "fixtures" / f"{name}.manifest.json"
    manifest = json.loads(path.read_text())
    model = build_official_like(manifest)
    state = make_state(load_manifest(str(path)), seed=manifest["state_seed"])
    converted, report = convert_official_rtdetr(state, target=model)
    model.load_state_dict(converted, strict=True)
    model.channels_last = False  # NCHW as the official code: the float rounding of the fixtures
    expected = torch.load(parity_dir / "fixtures" / f"{name}.expected.pt", weights_only=True)
    x = make_input((1, 3, 640, 640), 1)
    model.eval()
    rec = Recorder(model)
    with torch.no_grad():
        out = model.forward_raw(x)
    tensors = rec.finish()
    _, valid = model.decoder.get_anchors(model.decoder.eval_spatial_shapes(), "cpu")
    perm = query_alignment(tensors["topk_ind"][0], expected["eval"]["query_selection"]["topk_ind"][0], valid)
    return dict(
        name=name,
        manifest=manifest,
        model=model,
        expected=expected,
        x=x,
        out=out,
        tensors=tensors,
        perm=perm,
        report=report,
    )


def test_converter_used_every_tensor(case):
    report = case["report"]
    assert report.ok and not report.missing and not report.unexpected
    derived = [r["key"] for r in case["manifest"]["rows"] if r["kind"] == "derived"]
    # derived buffers (v2 anchors, valid_mask, num_points_scale) are computed by the model, never loaded
    assert not set(derived) & set(case["model"].state_dict())


def test_eval_logits_and_boxes(case):
    exp = case["expected"]["eval"]
    out, perm = case["out"], case["perm"]
    d_logits = max_abs_diff(out["pred_logits"], exp["pred_logits"])
    d_boxes = max_abs_diff(out["pred_boxes"], exp["pred_boxes"])
    if d_logits > TOL or d_boxes > TOL:  # only the order of (tied) queries may differ
        d_logits = max_abs_diff(out["pred_logits"][:, perm], exp["pred_logits"])
        d_boxes = max_abs_diff(out["pred_boxes"][:, perm], exp["pred_boxes"])
    print(f"{case['name']}: max|dlogits|={d_logits:.3g} max|dboxes|={d_boxes:.3g}")
    assert d_logits <= STRICT_TOL and d_boxes <= STRICT_TOL


def test_query_selection(case):
    exp = case["expected"]["eval"]
    got = case["tensors"]["topk_ind"][0][case["perm"]]
    exp_ind = exp["query_selection"]["topk_ind"][0]
    _, mask = case["model"].decoder.get_anchors(case["model"].decoder.eval_spatial_shapes(), "cpu")
    is_valid = mask.flatten()[exp_ind]
    assert torch.equal(got[is_valid], exp_ind[is_valid])  # rows from valid anchors agree exactly
    assert int((~is_valid).sum()) == exp["query_selection"]["n_selected_invalid_anchor"]
    init_ref = case["tensors"]["decoder.init_ref_points_unact"][:, case["perm"]]
    assert max_abs_diff(init_ref, exp["init_ref_points_unact"]) <= TOL


def test_summaries(case):
    per_query = ("decoder.init_target", "decoder.init_ref_points_unact", "decoder.layers.")
    got = dict(case["tensors"])
    got["pred_logits"], got["pred_boxes"], got["input"] = (
        case["out"]["pred_logits"],
        case["out"]["pred_boxes"],
        case["x"],
    )
    failures = []
    for name, summary in case["expected"]["summaries"].items():
        t = got[name]
        if name.startswith(per_query) or name.startswith("pred_"):
            t = t[:, case["perm"]]
        ok, detail = check_summary(summary, t, rtol=1e-4, atol=1e-5)
        if not ok:
            failures.append((name, detail))
    assert not failures, failures


def test_postprocess(case):
    exp = case["expected"]["eval"]["post"]
    post = RTDETRPostProcessor(num_classes=80, num_top_queries=300)
    sizes = torch.tensor(exp["orig_target_sizes"], dtype=torch.float32)
    scores, labels, boxes, _ = post(case["out"], sizes)
    scores, labels, boxes = scores[0], labels[0], boxes[0]
    assert max_abs_diff(scores, exp["scores"]) <= TOL
    used = set()
    for i in range(len(scores)):
        # (label, box) must match at i, or at an entry whose score is within the tolerance (near-tie)
        near = torch.nonzero((exp["scores"] - scores[i]).abs() < TOL).flatten().tolist()
        match = [
            j
            for j in near
            if j not in used
            and int(exp["labels"][j]) == int(labels[i])
            and float((exp["boxes"][j] - boxes[i]).abs().max()) <= 0.1
        ]
        assert match, f"detection {i} (score {float(scores[i]):.6f}, label {int(labels[i])}) has no counterpart"
        used.add(i if i in match else match[0])


def test_train_losses(case):
    model, exp = case["model"], case["expected"]["train"]
    targets = [{"labels": torch.tensor(exp["targets"]["labels"]), "boxes": torch.tensor(exp["targets"]["boxes"])}]
    captured = {}
    handle = model.decoder.decoder.register_forward_pre_hook(lambda m, a: captured.update(ref=a[1]))
    model.train()
    try:
        torch.manual_seed(exp["seed"])
        with torch.no_grad(), onednn_kernels(False):  # the training forward with PyTorch's linear
            out = model.forward_raw(case["x"], targets)
            losses = model.criterion(out, targets)
    finally:
        handle.remove()
        model.eval()
    # the official RNG consumption is reproduced: same noised denoising queries, no injection
    n_dn = exp["dn_meta"]["dn_num_split"][0]
    assert out["dn_meta"]["dn_num_split"] == exp["dn_meta"]["dn_num_split"]
    assert max_abs_diff(captured["ref"][:, :n_dn], exp["dn_ref_points_unact"]) <= 1e-6
    num_layers = model.decoder.num_layers
    expected = {}
    for k, v in exp["losses"].items():  # v1 names the encoder proposals _aux_{L-1}; ours are v2 (_enc_0)
        if case["manifest"]["impl"] == "v1" and k.endswith(f"_aux_{num_layers - 1}"):
            k = k.replace(f"_aux_{num_layers - 1}", "_enc_0")
        expected[k] = v
    assert set(losses) == set(expected)
    final = {"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}
    for (q, t), (eq, et) in zip(model.criterion.matcher(final, targets), exp["matched_indices_last_layer"]):
        assert q.tolist() == list(eq) and t.tolist() == list(et)
    rel = {k: abs(float(losses[k]) - v) / abs(v) for k, v in expected.items()}
    print(f"{case['name']}: worst relative loss diff {max(rel.values()):.3g}")
    assert max(rel.values()) <= 1e-4, rel
    total = sum(float(v) for v in losses.values())
    assert abs(total - exp["total_loss"]) / exp["total_loss"] <= 1e-4
    ok, detail = check_summary(
        exp["summaries"]["dn_last_pred_logits"], out["dn_aux_outputs"][-1]["pred_logits"], rtol=1e-4, atol=1e-5
    )
    assert ok, detail
    ok, detail = check_summary(exp["summaries"]["pred_boxes"], out["pred_boxes"], rtol=1e-4, atol=1e-5)
    assert ok, detail
