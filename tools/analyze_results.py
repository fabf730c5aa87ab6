#!/usr/bin/env python
"""Where a detector errs: the evaluation figures of a paper for one training run, or several
compared on the same axes.

    tools/analyze_results.py output/demo --output-dir output/demo/analysis
    tools/analyze_results.py output/rtdetr_r18 output/mlla_r18 --names RT-DETR MLLA --output-dir out/cmp
    tools/analyze_results.py --gt val.json --detections a.json b.json --names A B --output-dir out/cmp

A run directory is a training output folder (``config.yaml`` and a checkpoint). Its detections
on the test set are read from ``<run>/inference/<checkpoint>_<ema|raw>/coco_instances_results.json``;
when that file is missing the checkpoint (``--checkpoint``, default ``model_final.pth``; EMA weights
unless ``--raw``) is evaluated once on the config's test set by the project's COCO evaluator, which
writes it there. The ground truth is the test set's COCO json. ``--gt`` / ``--detections`` take
any COCO ground-truth json and COCO results jsons instead (e.g. another code base's outputs).

Writes to ``--output-dir``:

    pr_curves.png          precision-recall per class and over classes, IoU 0.5 and 0.75
    threshold_curves.png   precision, recall, F1 (IoU 0.5) vs score threshold, best F1 marked
    confusion_matrix.png   classes + background, at --score-threshold and --iou
    error_breakdown.png    TIDE dAP50: classification, localisation, both, duplicate, background, missed
    ap_by_size.png         AP by object size (COCO areas) and by class
    analysis.md            the tables of all of the above
    analysis.json          every number (AP in percent, precision / recall / F1 in [0, 1])
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Sequence, Tuple

from mlla_rtdetr.errors import UserError, run_main

FIGURES = ("pr_curves.png", "threshold_curves.png", "confusion_matrix.png", "error_breakdown.png",
           "ap_by_size.png")
DETECTIONS_FILE = "coco_instances_results.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="training output directories (config.yaml + checkpoint)")
    parser.add_argument("--gt", default=None, help="COCO ground-truth json (with --detections, instead of runs)")
    parser.add_argument("--detections", nargs="+", default=None, help="COCO results json(s), one per run")
    parser.add_argument("--names", nargs="+", default=None, help="display names of the runs (default: folder / file names)")
    parser.add_argument("--output-dir", required=True, help="folder for the figures, analysis.md and analysis.json")
    parser.add_argument("--checkpoint", default="model_final.pth",
                        help="checkpoint of each run to evaluate when its detections are missing (file name in the run)")
    parser.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA weights")
    parser.add_argument("--device", default="cpu", help="device of that evaluation")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="confusion matrix: minimum score")
    parser.add_argument("--iou", type=float, default=0.5, help="confusion matrix: minimum IoU of a match")
    parser.add_argument("--no-tide", action="store_true", help="skip the TIDE error breakdown")
    return parser


def run_detections(run_dir: str, checkpoint: str, use_ema: bool, device: str) -> Tuple[str, str]:
    """(ground-truth json, detections json) of a run's checkpoint on its config's test set; the
    detections are computed (and kept in the run) on first use."""
    from detectron2.config import instantiate

    from mlla_rtdetr.data import ensure_coco_json
    from mlla_rtdetr.engine import build_evaluator, build_model, evaluate_model, load_config

    config = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config):
        raise UserError(f"'{run_dir}' is not a training output folder: it has no config.yaml.")
    ckpt = checkpoint if os.path.isabs(checkpoint) else os.path.join(run_dir, checkpoint)
    tag = f"{os.path.splitext(os.path.basename(ckpt))[0]}_{'ema' if use_ema else 'raw'}"
    out_dir = os.path.join(run_dir, "inference", tag)
    dt_json = os.path.join(out_dir, DETECTIONS_FILE)
    cfg = load_config(config, require=("model", "dataloader"))
    cfg.dataloader.evaluator.output_dir = out_dir
    cfg.train.device = device
    evaluator = build_evaluator(cfg)  # registers the test set and its COCO json
    names = cfg.dataloader.test.dataset.names
    name = names if isinstance(names, str) else names[0]
    gt_json = ensure_coco_json(name)
    if not os.path.isfile(dt_json):
        if not os.path.isfile(ckpt):
            raise UserError(f"Neither '{dt_json}' nor the checkpoint '{ckpt}' exists: pass --checkpoint "
                            f"(one of: {', '.join(sorted(f for f in os.listdir(run_dir) if f.endswith('.pth'))) or 'none'}).")
        logging.info(f"{run_dir}: evaluating {os.path.basename(ckpt)} ({'EMA' if use_ema else 'raw'} weights) "
                     f"on {name} to write {dt_json}")
        model = build_model(cfg, device=device, checkpoint=ckpt, use_ema=use_ema)
        model.eval()
        evaluate_model({"": model}, instantiate(cfg.dataloader.test), lambda: evaluator)
    return gt_json, dt_json


def markdown_summary(runs: Sequence[Tuple[str, Dict[str, Any]]]) -> str:
    from mlla_rtdetr.utils.detection_analysis import SIZES, TIDE_MAIN_ERRORS, TIDE_SPECIAL_ERRORS
    from mlla_rtdetr.utils.report import markdown_table

    def num(v):
        return None if v is None or v != v else v

    lines = ["# Evaluation analysis", ""]
    lines += [f"- **{n}**: {a['num_images']} images, {a['num_gt']} boxes, {a['num_detections']} detections; "
              f"ground truth `{a['gt_json']}`, detections `{a['detections_json']}`" for n, a in runs]
    lines += ["", "## COCO box metrics (faster-coco-eval COCOeval)", ""]
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
    lines.append(markdown_table([{"run": n, **{k: num(a["coco"]["overall"][k]) for k in keys}} for n, a in runs],
                                digits=1))
    lines += ["", "## Per class: AP, AP by size, best F1 threshold (IoU 0.5)", ""]
    rows = []
    for n, a in runs:
        for c in a["class_names"]:
            pc, tc = a["coco"]["per_class"][c], a["threshold_curves"]["per_class"][c]
            best = tc["best"] or {}
            rows.append({"run": n, "class": c, "boxes": tc["num_gt"], "AP": num(pc["AP"]), "AP50": num(pc["AP50"]),
                         "AP75": num(pc["AP75"]), **{f"AP{s[0]}": num(a["sizes"]["per_class"][c][s]) for s in SIZES},
                         "best score": best.get("threshold"), "F1": best.get("f1"),
                         "P": best.get("precision"), "R": best.get("recall")})
    lines.append(markdown_table(rows, digits=2))
    lines += ["", "## All classes pooled: best score threshold (IoU 0.5)", ""]
    lines.append(markdown_table([{"run": n, "threshold": (a["threshold_curves"]["all"]["best"] or {}).get("threshold"),
                                  **{k: (a["threshold_curves"]["all"]["best"] or {}).get(v)
                                     for k, v in (("F1", "f1"), ("precision", "precision"), ("recall", "recall"))}}
                                 for n, a in runs], digits=3))
    if all("tide" in a for _, a in runs):
        lines += ["", "## Error breakdown (TIDE, tidecv): dAP50 of fixing each error type; counts in brackets", ""]
        lines.append(markdown_table([
            {"run": n, "AP50": a["tide"]["AP50"],
             **{k: f"{a['tide']['dAP'][k]:.2f} ({a['tide']['counts'][k]})" for k in TIDE_MAIN_ERRORS},
             **{k: a["tide"]["dAP_special"][k] for k in TIDE_SPECIAL_ERRORS}} for n, a in runs], digits=2))
    for n, a in runs:
        conf = a["confusion"]
        lines += ["", f"## Confusion matrix of {n} (rows: ground truth, columns: predicted; score >= "
                  f"{conf['score_threshold']}, IoU >= {conf['iou']}; faster-coco-eval)", ""]
        lines.append(markdown_table([{"gt \\ pred": lab, **dict(zip(conf["labels"], row))}
                                     for lab, row in zip(conf["labels"], conf["matrix"])]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[analyze_results] %(message)s")
    from mlla_rtdetr.utils import paper_figures as figs
    from mlla_rtdetr.utils.detection_analysis import analyze_detections, check_same_classes, json_safe

    if bool(args.gt) != bool(args.detections):
        raise UserError("--gt and --detections go together.")
    if args.gt and args.runs:
        raise UserError("Give run directories or --gt/--detections, not both.")
    if args.gt:
        pairs = [(args.gt, d) for d in args.detections]
        default_names = [os.path.splitext(os.path.basename(d))[0] for d in args.detections]
    elif args.runs:
        pairs = [run_detections(r, args.checkpoint, not args.raw, args.device) for r in args.runs]
        default_names = [os.path.basename(os.path.normpath(r)) for r in args.runs]
    else:
        raise UserError("Nothing to analyze: give run directories, or --gt and --detections.")
    names = args.names or default_names
    if len(names) != len(pairs) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(pairs)} distinct names, got {names}.")
    runs: List[Tuple[str, Dict[str, Any]]] = []
    for name, (gt_json, dt_json) in zip(names, pairs):
        logging.info(f"{name}: analysing {dt_json}")
        runs.append((name, analyze_detections(gt_json, dt_json, score_threshold=args.score_threshold,
                                              iou_threshold=args.iou, with_tide=not args.no_tide)))
    check_same_classes(runs)

    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    written = [figs.plot_pr_curves(runs, os.path.join(out, "pr_curves.png")),
               figs.plot_threshold_curves(runs, os.path.join(out, "threshold_curves.png")),
               figs.plot_confusion_matrices(runs, os.path.join(out, "confusion_matrix.png")),
               figs.plot_ap_by_size(runs, os.path.join(out, "ap_by_size.png"))]
    if not args.no_tide:
        written.append(figs.plot_error_breakdown(runs, os.path.join(out, "error_breakdown.png")))
    text = markdown_summary(runs)
    with open(os.path.join(out, "analysis.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "analysis.json"), "w") as f:
        json.dump(json_safe({"runs": dict(runs), "score_threshold": args.score_threshold, "iou": args.iou}), f,
                  indent=1)
    written += [os.path.join(out, "analysis.md"), os.path.join(out, "analysis.json")]
    print(text)
    print("Wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
