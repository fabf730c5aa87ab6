#!/usr/bin/env python
"""Float64 references of the official RT-DETR models, for parity tests that hold on every CPU.

The shared float32 fixtures (tests/fixtures/parity) were made on one CPU; float32 rounding differs
between AVX-512, AVX2 and generic kernels, enough to flip near-tied query selections and Hungarian
matches of their random-weight models. In float64 the rounding of every kernel is ~1e-16, so the
official outputs and losses computed in float64 are the same on any machine, and a float64 run of
this project's model must reproduce them to ~1e-9.

This script runs the OFFICIAL code (a checkout of lyuwenyu/RT-DETR at 068dfde, never part of this
repository) on the fixtures' states and inputs:

1. in float32 first, and checks that it reproduces the shared fixture (eval logits and boxes, train
   losses; the trajectory's step 0), so the float64 references belong to the same models;
2. then in float64 (``model.double()``, float64 inputs and targets), storing per case
   ``tests/fixtures/parity/float64/<case>.pt``: eval ``pred_logits`` / ``pred_boxes``, the encoder
   selection scores (max over classes, per anchor) and ``topk_ind``, the post-processed detections,
   and the train-mode losses of the fixture protocol (``torch.manual_seed(seed)``, forward, loss);
3. for ``rtdetrv2_r18vd`` also the three official optimizer steps of ``train_steps.pt`` in float64
   (AdamW param groups from the YAML, LinearWarmup, ModelEMA, clip): ``rtdetrv2_r18vd.train_steps.pt``.

Usage (each case runs in its own process: v1 and v2 are both a package called ``src``)::

    python scripts/make_float64_references.py --official-root ../official/RT-DETR
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "parity" / "fixtures"
OUT_DIR = REPO / "tests" / "fixtures" / "parity" / "float64"
CASES = ["rtdetr_v1_r18vd", "rtdetrv2_r18vd", "rtdetrv2_r50vd", "rtdetrv2_hgnetv2_l", "rtdetrv2_r18vd_dsp"]
TRAJECTORY_CASE = "rtdetrv2_r18vd"
ORIG_SIZES = [[640, 480]]

sys.path.insert(0, str(REPO / "tests" / "fixtures" / "parity"))
from parity_state import load_manifest, make_input, make_state, max_abs_diff  # noqa: E402


def log(msg: str) -> None:
    print(f"[float64-refs] {msg}", flush=True)


def official_yaml_config(root: str, impl: str, config: str):
    """The official ``YAMLConfig`` of ``config`` (v1: rtdetr_pytorch, v2: rtdetrv2_pytorch),
    pretrained backbones off."""
    pkg = os.path.join(root, "rtdetr_pytorch" if impl == "v1" else "rtdetrv2_pytorch")
    sys.path.insert(0, pkg)
    if impl == "v1":
        _skip_v1_data_package(pkg)
    from src.core import YAMLConfig  # the official package
    from src.core.yaml_utils import load_config

    (path,) = glob.glob(os.path.join(pkg, "configs", "**", config), recursive=True)
    overrides = {}
    for key, value in load_config(path).items():
        if isinstance(value, dict) and value.get("pretrained"):
            overrides[key] = {"pretrained": False}
    return YAMLConfig(path, **overrides)


def _skip_v1_data_package(pkg: str) -> None:
    """v1's data package needs torchvision <= 0.15 (``datapoints``, ``ToImageTensor``); its model
    does not use it, so it is registered as an empty package instead of being imported."""
    import types

    data = types.ModuleType("src.data")
    data.__path__ = [os.path.join(pkg, "src", "data")]
    sys.modules["src.data"] = data
    try:  # its RegNet / DLA backbones import Hugging Face transformers at module level; unused here
        import transformers  # noqa: F401
    except ImportError:
        stub = types.ModuleType("transformers")
        stub.RegNetModel = type("RegNetModel", (), {})
        sys.modules["transformers"] = stub


def to_dtype(targets, dtype):
    return [{"labels": t["labels"], "boxes": t["boxes"].to(dtype)} for t in targets]


def eval_outputs(model, postprocessor, x):
    captured = {}
    handle = model.decoder.enc_score_head.register_forward_hook(lambda m, i, o: captured.update(s=o))
    model.eval()
    with torch.no_grad():
        out = model(x)
        post = postprocessor(out, torch.tensor(ORIG_SIZES, dtype=x.dtype))[0]
    handle.remove()
    selection_scores = captured["s"].max(-1).values[0]  # (num_anchors,) invalid anchors included
    out = {k: out[k] for k in ("pred_logits", "pred_boxes")}
    return out, post, selection_scores


def train_losses(model, criterion, x, targets, seed, impl):
    model.train()
    if impl == "v1":
        model.multi_scale = None
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model(x, targets)
        losses = criterion(out, targets) if impl == "v1" else criterion(
            out, targets, epoch=0, step=0, global_step=0)
    model.eval()
    return {k: float(v) for k, v in losses.items()}


def make_case(root: str, case: str) -> None:
    torch.set_num_threads(2)
    manifest_path = FIXTURES / f"{case}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    expected = torch.load(FIXTURES / f"{case}.expected.pt", weights_only=True)
    cfg = official_yaml_config(root, manifest["impl"], manifest["official_config"])
    model, criterion, post = cfg.model, cfg.criterion, cfg.postprocessor
    post.remap_mscoco_category = False  # the fixtures' labels are contiguous 0..79
    state = make_state(load_manifest(str(manifest_path)), seed=manifest["state_seed"])

    def fresh(dtype):  # a train-mode forward updates BatchNorm statistics: reload before each run
        sd = model.state_dict()
        sd.update(state)
        model.load_state_dict(sd, strict=True)
        return model.to(dtype)

    x = make_input((1, 3, 640, 640), 1)
    exp_train = expected["train"]
    targets = [{"labels": torch.tensor(exp_train["targets"]["labels"]),
                "boxes": torch.tensor(exp_train["targets"]["boxes"])}]

    # 1. float32: the official code reproduces the shared fixture on this machine
    out32, _, _ = eval_outputs(fresh(torch.float32), post, x)
    d_logits = max_abs_diff(out32["pred_logits"], expected["eval"]["pred_logits"])
    d_boxes = max_abs_diff(out32["pred_boxes"], expected["eval"]["pred_boxes"])
    losses32 = train_losses(fresh(torch.float32), criterion, x, targets, exp_train["seed"], manifest["impl"])
    rel32 = max(abs(losses32[k] - v) / abs(v) for k, v in exp_train["losses"].items())
    log(f"{case}: official float32 vs shared fixture: logits {d_logits:.3g}, boxes {d_boxes:.3g}, "
        f"train losses worst relative {rel32:.3g}")

    # 2. float64
    x64 = x.double()
    out64, post64, scores64 = eval_outputs(fresh(torch.float64), post, x64)
    losses64 = train_losses(fresh(torch.float64), criterion, x64, to_dtype(targets, torch.float64), exp_train["seed"],
                            manifest["impl"])
    k = out64["pred_logits"].shape[1]
    topk = torch.topk(scores64, k)
    ref = {
        "case": case,
        "official_commit": manifest["official_commit"],
        "state_seed": manifest["state_seed"],
        "made_with": {"torch": str(torch.__version__), "threads": torch.get_num_threads()},
        "float32_check": {"max_abs_logits": d_logits, "max_abs_boxes": d_boxes, "train_losses_worst_rel": rel32},
        "eval": {
            "pred_logits": out64["pred_logits"],
            "pred_boxes": out64["pred_boxes"],
            "selection_scores": scores64,
            "topk_ind": topk.indices,
            "post": {"orig_target_sizes": ORIG_SIZES, "scores": post64["scores"], "labels": post64["labels"],
                     "boxes": post64["boxes"]},
        },
        "train": {"seed": exp_train["seed"], "targets": exp_train["targets"], "losses": losses64,
                  "total_loss": sum(losses64.values())},
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    torch.save(ref, OUT_DIR / f"{case}.pt")
    log(f"{case}: wrote {OUT_DIR / (case + '.pt')} (float64 vs float32 official: logits "
        f"{max_abs_diff(out64['pred_logits'].float(), out32['pred_logits']):.3g}; train losses worst relative "
        f"{max(abs(losses64[k] - v) / abs(v) for k, v in exp_train['losses'].items()):.3g})")


def make_trajectory(root: str) -> None:
    """The official three optimizer steps of ``rtdetrv2_r18vd.train_steps.pt``, float32 (checked
    against the fixture) and float64 (stored)."""
    torch.set_num_threads(2)
    fx = torch.load(FIXTURES / f"{TRAJECTORY_CASE}.train_steps.pt", weights_only=True)
    manifest_path = FIXTURES / f"{TRAJECTORY_CASE}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    state = make_state(load_manifest(str(manifest_path)), seed=fx["state_seed"])
    results = {}
    for dtype in (torch.float32, torch.float64):
        cfg = official_yaml_config(root, manifest["impl"], manifest["official_config"])
        model, criterion = cfg.model, cfg.criterion
        sd = model.state_dict()
        sd.update(state)
        model.load_state_dict(sd, strict=True)
        model.to(dtype).train()
        optimizer = cfg.optimizer
        from src.optim import LinearWarmup, ModelEMA

        warmup = LinearWarmup(cfg.lr_scheduler, fx["warmup_duration"], last_step=fx["start_iteration"] - 1)
        ema = ModelEMA(model, fx["ema"]["decay"], fx["ema"]["warmups"])
        ema.updates = fx["start_iteration"]
        steps = []
        for step in fx["steps"]:
            x = make_input((2, 3, 640, 640), step["input_seed"]).to(dtype)
            targets = [{"labels": torch.tensor(t["labels"]), "boxes": torch.tensor(t["boxes"], dtype=dtype)}
                       for t in step["targets"]]
            lr_used = [g["lr"] for g in optimizer.param_groups]
            torch.manual_seed(step["forward_seed"])
            out = model(x, targets)
            losses = criterion(out, targets, epoch=0, step=step["step"], global_step=step["step"])
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), fx["clip_max_norm"])
            optimizer.step()
            ema.update(model)
            warmup.step()
            steps.append({"losses": {k: float(v) for k, v in losses.items()}, "total_loss": float(loss),
                          "grad_norm_before_clip": float(grad_norm), "lr_used": lr_used,
                          "ema_updates": ema.updates})
        final = {k: v.detach().clone() for k, v in model.state_dict().items() if k in fx["final_tensors"]}
        final_ema = {k: v.detach().clone() for k, v in ema.module.state_dict().items()
                     if k in fx["final_ema_tensors"]}
        results[dtype] = (steps, final, final_ema)
    steps32 = results[torch.float32][0]
    for i, (got, exp) in enumerate(zip(steps32, fx["steps"])):
        rel = max(abs(got["losses"][k] - v) / abs(v) for k, v in exp["losses"].items())
        log(f"trajectory float32 step {i} vs shared fixture: worst relative loss {rel:.3g}, grad norm "
            f"{abs(got['grad_norm_before_clip'] - exp['grad_norm_before_clip']) / exp['grad_norm_before_clip']:.3g}")
    steps64, final64, final_ema64 = results[torch.float64]
    ref = {
        "case": TRAJECTORY_CASE,
        "official_commit": manifest["official_commit"],
        "made_with": {"torch": str(torch.__version__), "threads": torch.get_num_threads()},
        "steps": steps64,
        "final_tensors": final64,
        "final_ema_tensors": final_ema64,
    }
    torch.save(ref, OUT_DIR / f"{TRAJECTORY_CASE}.train_steps.pt")
    log(f"trajectory: wrote {OUT_DIR / (TRAJECTORY_CASE + '.train_steps.pt')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-root", required=True, help="checkout of lyuwenyu/RT-DETR at 068dfde")
    parser.add_argument("--cases", nargs="*", default=CASES + ["trajectory"])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one case in this process
    args = parser.parse_args()
    if args.one:
        make_trajectory(args.official_root) if args.one == "trajectory" else make_case(args.official_root, args.one)
        return
    for case in args.cases:
        subprocess.run([sys.executable, __file__, "--official-root", args.official_root, "--one", case], check=True)


if __name__ == "__main__":
    main()
