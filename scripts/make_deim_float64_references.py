#!/usr/bin/env python
"""Float64 references of the official DEIM / D-FINE models for the portable parity tests.

The shared parity fixtures (``tests/fixtures/parity/fixtures/{case}.expected.pt``) were made in
float32 on one CPU. Float32 results differ between CPU kernels (AVX-512 / AVX2 / generic), and
the train losses of these random-weight models hinge on near-tied Hungarian matches, so
``tests/test_deim_parity.py`` compares our model in float64 against the official model run in
float64 on the same weights and input: those numbers agree to ~1e-12 on any CPU.

This script builds each official model from the manifest's ``official_config_values`` (the
official code is imported from ``--official``, a checkout of ShihuaHuang95/DEIM @ a9aa4ad; it is
never part of this repository), loads ``make_state(rows, state_seed)``, and

1. runs it in float32 and checks that it reproduces the stored shared fixture (eval logits and
   boxes, post-processing, every train loss), so the references below come from the same model;
2. converts it to float64 and stores the eval outputs (logits, boxes, selected queries), the
   post-processed detections, the train-mode outputs (final and last denoising layer; D-FINE's
   edge distributions) and losses, denoising split and matches (same seed, targets and criterion
   call as the fixture) in ``--out/{case}.float64.pt``.

Usage::

    python scripts/make_deim_float64_references.py --official /path/to/DEIM \\
        [--fixtures tests/fixtures/parity/fixtures] [--out tests/fixtures/parity/float64]

``--count-params`` instead builds the official model of every COCO config of the model zoo (D-FINE
N-X, DEIM-D-FINE N-X, DEIM-RT-DETRv2 R18-R101, from the YAMLs with their includes) and prints its
parameter count (every registered parameter, as the official count), the numbers
``tests/test_deim_configs.py`` checks our configs against.

Exit status 0 when every case was written, 1 when the float32 check failed.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "parity"))
from parity_state import load_manifest, make_input, make_state  # noqa: E402

CASES = ("deim_rtdetrv2_r18vd", "deim_dfine_hgnetv2_s", "dfine_hgnetv2_n")


def import_official(root: Path):
    """The official ``engine`` modules the models need, without the package ``__init__`` files
    (they import the data pipeline, optimizers and solvers); ``register`` becomes a no-op and the
    distributed helpers report one process."""
    engine_dir = root / "engine"
    if not (engine_dir / "deim" / "dfine_decoder.py").is_file():
        raise SystemExit(f"error: {root} is not a DEIM checkout (no engine/deim/dfine_decoder.py)")
    for name in ("engine", "engine.backbone", "engine.deim", "engine.misc"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(engine_dir / name.partition(".")[2])] if "." in name else [str(engine_dir)]
        sys.modules[name] = pkg
    core = types.ModuleType("engine.core")
    core.register = lambda *a, **k: (lambda cls: cls)
    sys.modules["engine.core"] = core
    dist = types.ModuleType("engine.misc.dist_utils")
    dist.get_world_size = lambda: 1
    dist.is_dist_available_and_initialized = lambda: False
    sys.modules["engine.misc.dist_utils"] = dist
    _float64_safe_translate_gt(importlib.import_module("engine.deim.dfine_utils"))
    mods = {}
    for name in ("backbone.presnet", "backbone.hgnetv2", "deim.hybrid_encoder", "deim.dfine_decoder",
                 "deim.rtdetrv2_decoder", "deim.deim_criterion", "deim.matcher", "deim.postprocessor"):
        mods[name] = importlib.import_module("engine." + name)
    return mods


def _float64_safe_translate_gt(dfine_utils) -> None:
    """The official ``translate_gt`` (FGL targets) casts the bin indices with ``.float()`` and then
    writes the interpolation weights into ``zeros_like(indices)``, which fails for float64 boxes.
    Recompile it from its own source with the cast to the boxes' dtype (a no-op in float32)."""
    import inspect
    import textwrap

    src = textwrap.dedent(inspect.getsource(dfine_utils.translate_gt))
    old = "indices = closest_left_indices.float()"
    if src.count(old) != 1:
        raise SystemExit("error: unexpected official translate_gt; this script expects DEIM @ a9aa4ad")
    namespace = dict(vars(dfine_utils))
    exec(compile(src.replace(old, "indices = closest_left_indices.to(gt.dtype)"), dfine_utils.__file__, "exec"),
         namespace)
    dfine_utils.translate_gt = namespace["translate_gt"]


def build_official(mods, manifest):
    cfg = manifest["official_config_values"]
    parts = cfg["DEIM"]
    if parts["backbone"] == "HGNetv2":
        backbone = mods["backbone.hgnetv2"].HGNetv2(**cfg["HGNetv2"])
    else:
        pr = dict(cfg["PResNet"])
        pr.pop("local_model_dir", None)
        backbone = mods["backbone.presnet"].PResNet(**pr)
    he = dict(cfg["HybridEncoder"], eval_spatial_size=cfg["eval_spatial_size"])
    encoder = mods["deim.hybrid_encoder"].HybridEncoder(**he)
    dec_cls = {"DFINETransformer": mods["deim.dfine_decoder"].DFINETransformer,
               "RTDETRTransformerv2": mods["deim.rtdetrv2_decoder"].RTDETRTransformerv2}[parts["decoder"]]
    dec = dict(cfg[parts["decoder"]], num_classes=cfg["num_classes"], eval_spatial_size=cfg["eval_spatial_size"])
    decoder = dec_cls(**dec)
    model = torch.nn.Module()
    model.backbone, model.encoder, model.decoder = backbone, encoder, decoder
    crit = dict(cfg["DEIMCriterion"])
    m = dict(crit.pop("matcher"))
    m.pop("type")
    matcher = mods["deim.matcher"].HungarianMatcher(use_focal_loss=cfg["use_focal_loss"], **m)
    criterion = mods["deim.deim_criterion"].DEIMCriterion(matcher, num_classes=cfg["num_classes"], **crit)
    post = mods["deim.postprocessor"].PostProcessor(num_classes=cfg["num_classes"], use_focal_loss=True,
                                                    num_top_queries=cfg["PostProcessor"]["num_top_queries"])
    return model, criterion, post


def forward(model, x, targets=None):
    return model.decoder(model.encoder(model.backbone(x)), targets)


def run(model, criterion, post, x, exp_train, dtype):
    """Eval outputs (+ selected queries), post-processing and train losses in ``dtype``."""
    model = model.to(dtype)
    x = x.to(dtype)
    captured = {}
    dec = model.decoder
    original = dec._select_topk

    def select(memory, logits, anchors, k):
        out = original(memory, logits, anchors, k)
        idx = torch.topk(logits.max(-1).values, k, dim=-1).indices
        captured["topk_ind"] = idx
        return out

    dec._select_topk = select
    model.eval()
    with torch.no_grad():
        out = forward(model, x)
    del dec._select_topk
    sizes = torch.tensor([[640, 480]], dtype=dtype)
    det = post(out, sizes)[0]
    targets = [{"labels": torch.tensor(exp_train["targets"]["labels"]),
                "boxes": torch.tensor(exp_train["targets"]["boxes"], dtype=dtype)}]
    model.train()
    torch.manual_seed(exp_train["seed"])
    with torch.no_grad():
        tout = forward(model, x, targets)
        losses = criterion(tout, targets, epoch=0, step=0, global_step=0, epoch_step=100)
    matched = criterion.matcher({"pred_logits": tout["pred_logits"], "pred_boxes": tout["pred_boxes"]},
                                targets)["indices"]
    model.eval()
    train_outputs = {k: tout[k] for k in ("pred_logits", "pred_boxes", "pred_corners") if k in tout}
    train_outputs["dn_last_pred_logits"] = tout["dn_outputs"][-1]["pred_logits"]
    train_outputs["dn_last_pred_boxes"] = tout["dn_outputs"][-1]["pred_boxes"]
    own = lambda t: t.detach().clone()  # noqa: E731  (views would save their whole storage)
    return dict(
        train_outputs={k: own(v) for k, v in train_outputs.items()},
        pred_logits=own(out["pred_logits"]), pred_boxes=own(out["pred_boxes"]), topk_ind=own(captured["topk_ind"]),
        post={k: own(det[k]) for k in ("scores", "labels", "boxes")},
        losses={k: float(v) for k, v in losses.items()},
        dn_num_split=list(tout["dn_meta"]["dn_num_split"]),
        matched_indices_last_layer=[(q.tolist(), t.tolist()) for q, t in matched],
    )


def check_float32(case, got, expected) -> list:
    """Differences between the official float32 run here and the stored fixture."""
    problems = []
    ev = expected["eval"]
    got_ind, exp_ind = got["topk_ind"][0].tolist(), ev["query_selection"]["topk_ind"][0].tolist()
    if sorted(got_ind) != sorted(exp_ind):
        return [f"{case}: the selected queries differ from the fixture"]
    # near-tied scores may come out of topk in another order on another CPU: align the rows
    perm = torch.tensor([got_ind.index(a) for a in exp_ind])
    for key in ("pred_logits", "pred_boxes"):
        d = float((got[key][:, perm] - ev[key]).abs().max())
        if d > 1e-4:
            problems.append(f"{case}: eval {key} differs from the fixture by {d:.3g}")
    for k, v in expected["train"]["losses"].items():
        if k not in got["losses"] or abs(got["losses"][k] - v) > 1e-4 * max(1.0, abs(v)):
            problems.append(f"{case}: train {k} = {got['losses'].get(k)} vs fixture {v}")
    return problems


OFFICIAL_CONFIGS = [f"deim_dfine/{p}_hgnetv2_{s}_coco.yml" for p in ("dfine", "deim") for s in "nsmlx"] + [
    f"deim_rtdetrv2/deim_{n}_coco.yml"
    for n in ("r18vd_120e", "r34vd_120e", "r50vd_m_60e", "r50vd_60e", "r101vd_60e")
]


def _load_yaml(root: Path, rel: str) -> dict:
    """An official YAML with its ``__include__`` files merged (later files and the file itself win)."""
    import yaml

    path = root / "configs" / rel
    cfg = yaml.safe_load(path.read_text())
    merged: dict = {}
    for inc in cfg.pop("__include__", []):
        _merge(merged, _load_yaml(root, str((path.parent / inc).resolve().relative_to(root / "configs"))))
    _merge(merged, cfg)
    return merged


def _merge(into: dict, other: dict) -> None:
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def count_official_params(mods, root: Path) -> None:
    for rel in OFFICIAL_CONFIGS:
        cfg = _load_yaml(root, rel)
        parts = cfg["DEIM"]
        section = cfg[parts["backbone"]]
        section["pretrained"] = False
        values = {"DEIM": parts, parts["backbone"]: section, "HybridEncoder": cfg["HybridEncoder"],
                  parts["decoder"]: cfg[parts["decoder"]], "DEIMCriterion": cfg["DEIMCriterion"],
                  "PostProcessor": cfg["PostProcessor"], "num_classes": cfg.get("num_classes", 80),
                  "use_focal_loss": True, "eval_spatial_size": cfg["eval_spatial_size"]}
        model, _, _ = build_official(mods, {"official_config_values": values})
        print(f"{rel}: {sum(p.numel() for p in model.parameters()):,}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of ShihuaHuang95/DEIM @ a9aa4ad")
    ap.add_argument("--fixtures", type=Path, default=REPO / "tests/fixtures/parity/fixtures")
    ap.add_argument("--out", type=Path, default=REPO / "tests/fixtures/parity/float64")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--count-params", action="store_true", help="print the official parameter counts and exit")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    mods = import_official(args.official.resolve())
    if args.count_params:
        count_official_params(mods, args.official.resolve())
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for case in args.cases:
        path = args.fixtures / f"{case}.manifest.json"
        manifest = json.loads(path.read_text())
        expected = torch.load(args.fixtures / f"{case}.expected.pt", weights_only=True)
        model, criterion, post = build_official(mods, manifest)
        state = make_state(load_manifest(str(path)), seed=manifest["state_seed"])
        sd = model.state_dict()
        sd.update(state)
        model.load_state_dict(sd, strict=True)
        x = make_input((1, 3, 640, 640), 1)
        # training-mode BatchNorm updates the running statistics: every run starts from a fresh copy
        problems = check_float32(
            case, run(copy.deepcopy(model), criterion, post, x, expected["train"], torch.float32), expected
        )
        if problems:
            print("\n".join(problems))
            failed.append(case)
            continue
        ref = run(copy.deepcopy(model), criterion, post, x, expected["train"], torch.float64)
        ref.update(case=case, official_commit=manifest["official_commit"], torch_version=str(torch.__version__),
                   note="official model in float64 on make_state(rows, state_seed) and make_input((1,3,640,640), 1)")
        torch.save(ref, args.out / f"{case}.float64.pt")
        print(f"{case}: float32 run reproduces the fixture; float64 reference written "
              f"({len(ref['losses'])} losses)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
