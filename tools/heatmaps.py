#!/usr/bin/env python
"""Where a detector looks: Grad-CAM-family heatmaps of chosen layers and the deformable
cross-attention of the best queries, for one trained run or several side by side (same images,
same layers by role).

    tools/heatmaps.py output/demo --output-dir output/demo/heatmaps
    tools/heatmaps.py output/rtdetr_r18 output/mlla_r18 --names RT-DETR MLLA \\
        --layers backbone:S5 encoder:S4 encoder.encoder.0 --methods eigencam gradcam layercam --num-images 6

A run is a training output folder (``config.yaml`` and ``--checkpoint``, default
``model_final.pth``; EMA weights unless ``--raw``). The images are the first ``--num-images`` of
the first run's test set (``--image-ids`` picks others), with their ground-truth boxes.

Layers (``--layers``): ``backbone:S3|S4|S5`` (the backbone maps the encoder reads, stride 8 / 16 /
32), ``encoder:S3|S4|S5`` (the encoder outputs the decoder attends to), or any module name of the
model (e.g. ``encoder.encoder.0``, the intra-scale block; ``backbone.layers.3``). Methods
(``--methods``): eigencam (no gradients), gradcam, layercam, gradcam++, xgradcam, hirescam (grad-cam
package); the gradient ones explain the ``--target`` (class logit ``score`` or box ``box``) of the
image's best ``--num-queries`` queries (scores >= ``--min-score``, the best one always).

Writes to ``--output-dir``:

    cam_<method>.png   rows: images; columns: run x layer; ground truth white, explained detections cyan
    deform_attn.png    per run and image, the best query's sampling points per level, sized and
                       coloured by attention weight (decoder layer ``--decoder-layer``)
    heatmaps.json      per run, layer and method: how much of the map lies on the objects (mean inside
                       the ground-truth boxes / mean outside, share of the map's sum inside them, and
                       the share of the image they cover); per query the attention share of each level
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List

import numpy as np

from mlla_rtdetr.errors import UserError, run_main


def build_parser() -> argparse.ArgumentParser:
    from mlla_rtdetr.utils.heatmaps import CAM_METHODS, TARGET_KINDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training output directories (config.yaml + checkpoint)")
    parser.add_argument("--names", nargs="+", default=None, help="display names of the runs")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--checkpoint", default="model_final.pth", help="checkpoint file name in each run")
    parser.add_argument("--raw", action="store_true", help="raw weights instead of the EMA weights")
    parser.add_argument("--layers", nargs="+", default=["backbone:S4", "encoder:S3"], help="layers by role or module name")
    parser.add_argument("--methods", nargs="+", default=["eigencam", "gradcam"], choices=CAM_METHODS)
    parser.add_argument("--target", default="score", choices=TARGET_KINDS, help="what the gradient methods explain")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--image-ids", nargs="+", type=int, default=None, help="test images to show, by image_id")
    parser.add_argument("--num-queries", type=int, default=3, help="queries explained per image")
    parser.add_argument("--min-score", type=float, default=0.3, help="lowest score of an explained query")
    parser.add_argument("--decoder-layer", type=int, default=-1, help="decoder layer of the attention figure")
    parser.add_argument("--device", default="cpu")
    return parser


def load_run(run_dir: str, checkpoint: str, use_ema: bool, device: str):
    from mlla_rtdetr.engine import build_model, load_config

    config = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config):
        raise UserError(f"'{run_dir}' is not a training output folder: it has no config.yaml.")
    ckpt = checkpoint if os.path.isabs(checkpoint) else os.path.join(run_dir, checkpoint)
    if not os.path.isfile(ckpt):
        raise UserError(f"'{ckpt}' does not exist: pass --checkpoint (one of: "
                        f"{', '.join(sorted(f for f in os.listdir(run_dir) if f.endswith('.pth'))) or 'none'}).")
    cfg = load_config(config, require=("model", "dataloader"))
    model = build_model(cfg, device=device, checkpoint=ckpt, use_ema=use_ema).eval()
    return cfg, model


def test_images(cfg, num: int, image_ids) -> List[Dict[str, Any]]:
    """The chosen test records with their image (original pixels) and ground-truth XYXY boxes."""
    from detectron2.config import instantiate
    from detectron2.structures import BoxMode

    from mlla_rtdetr.data import read_image_rgb

    dicts = list(instantiate(cfg.dataloader.test.dataset))
    if image_ids:
        by_id = {int(d["image_id"]): d for d in dicts}
        missing = [i for i in image_ids if i not in by_id]
        if missing:
            raise UserError(f"--image-ids {missing} are not in the test set (ids {min(by_id)}..{max(by_id)}).")
        dicts = [by_id[i] for i in image_ids]
    else:
        dicts = dicts[:num]
    out = []
    for d in dicts:
        anns = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = np.array([BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
                          for a in anns], dtype=np.float32).reshape(-1, 4)
        out.append({"record": d, "image": read_image_rgb(d["file_name"]).permute(1, 2, 0).numpy(), "gt": boxes,
                    "gt_classes": [int(a["category_id"]) for a in anns]})
    return out


def resize_map(cam: np.ndarray, hw) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((hw[1], hw[0]), Image.BILINEAR))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[heatmaps] %(message)s")
    from detectron2.config import instantiate
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from mlla_rtdetr.data import config_class_names
    from mlla_rtdetr.utils import paper_figures as figs
    from mlla_rtdetr.utils.heatmaps import (
        QueryTarget,
        compute_cams,
        deformable_attention,
        map_in_boxes,
        top_queries,
    )
    from mlla_rtdetr.utils.report import write_json
    from mlla_rtdetr.utils.visualize import class_name, draw_boxes

    names = args.names or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(names) != len(args.runs) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(args.runs)} distinct names, got {names}.")
    if args.num_images < 1 or args.num_queries < 1:
        raise UserError("--num-images and --num-queries must be >= 1.")
    models = [load_run(r, args.checkpoint, not args.raw, args.device) for r in args.runs]
    samples = test_images(models[0][0], args.num_images, args.image_ids)
    class_names = config_class_names(models[0][0])
    white, cyan = (255, 255, 255), (0, 235, 255)

    cells = {m: [[] for _ in samples] for m in args.methods}
    notes = {m: [[] for _ in samples] for m in args.methods}
    col_titles, attn_rows = [], []
    report: Dict[str, Any] = {"images": [s["record"]["file_name"] for s in samples], "layers": args.layers,
                              "methods": args.methods, "target": args.target, "runs": {}}
    for name, run_dir, (cfg, model) in zip(names, args.runs, models):
        mapper = instantiate(cfg.dataloader.test.mapper)
        images, _ = model.preprocess_image([mapper(s["record"]) for s in samples])
        picks = top_queries(model, images, args.num_queries, args.min_score)
        targets = [QueryTarget([p[0] for p in ps], [p[1] for p in ps], model.num_classes, args.target) for ps in picks]
        entry: Dict[str, Any] = {"run": os.path.abspath(run_dir), "queries": [
            [{"query": q, "class": class_name(c, class_names), "score": s} for q, c, s, _ in ps] for ps in picks],
            "maps": {}}
        col_titles += [f"{name} · {layer}" for layer in args.layers]
        for method in args.methods:
            logging.info(f"{name}: {method} of {', '.join(args.layers)}")
            cams = compute_cams(model, images, args.layers, method, None if method == "eigencam" else targets)
            for layer in args.layers:
                per_image = []
                for i, s in enumerate(samples):
                    h, w = s["image"].shape[:2]
                    cam = resize_map(cams[layer][i], (h, w))
                    stats = map_in_boxes(cam, s["gt"])
                    per_image.append(stats)
                    overlay = show_cam_on_image(s["image"].astype(np.float32) / 255, np.clip(cam, 0, 1), use_rgb=True,
                                                image_weight=0.55)
                    det = np.array([_xyxy(p[3], w, h) for p in picks[i]], dtype=np.float32).reshape(-1, 4)
                    overlay = draw_boxes(overlay, np.concatenate([s["gt"], det]), None,
                                         [white] * len(s["gt"]) + [cyan] * len(det), width=1)
                    cells[method][i].append(overlay)
                    notes[method][i].append(f"in/out {stats['ratio']:.2f}" if stats else "")
                valid = [p for p in per_image if p]
                entry["maps"].setdefault(layer, {})[method] = {
                    "per_image": per_image,
                    "mean_ratio": float(np.mean([p["ratio"] for p in valid])) if valid else None,
                    "energy_in_boxes": float(np.mean([p["energy_in_boxes"] for p in valid])) if valid else None,
                    "box_area": float(np.mean([p["box_area"] for p in valid])) if valid else None,
                }
        attention = deformable_attention(model, images, [[p[0] for p in ps] for ps in picks], args.decoder_layer)
        entry["deformable_attention"] = []
        for i, (s, ps, att) in enumerate(zip(samples, picks, attention)):
            h, w = s["image"].shape[:2]
            per_query = []
            for (q, c, score, box), a in zip(ps, att):
                totals = [float(np.sum(lv["weight"])) for lv in a["levels"]]
                per_query.append({"query": q, "level_share": [t / sum(totals) for t in totals]})
            entry["deformable_attention"].append(per_query)
            q, c, score, box = ps[0]
            attn_rows.append({"image": s["image"], "box": _xyxy(box, w, h), "levels": att[0]["levels"],
                              "title": f"{name}: {class_name(c, class_names)} {score:.2f}"})
        report["runs"][name] = entry

    os.makedirs(args.output_dir, exist_ok=True)
    written = []
    row_titles = [os.path.basename(s["record"]["file_name"]) for s in samples]
    for method in args.methods:
        written.append(figs.plot_image_grid(
            cells[method], os.path.join(args.output_dir, f"cam_{method}.png"), col_titles, row_titles, notes[method],
            title=f"{method} ({'no gradients' if method == 'eigencam' else 'target: ' + args.target + ' of the cyan detections'}); "
                  "in/out = mean inside the white ground-truth boxes / outside"))
    written.append(figs.plot_deformable_attention(attn_rows, os.path.join(args.output_dir, "deform_attn.png")))
    written.append(write_json(os.path.join(args.output_dir, "heatmaps.json"), report))
    for name, entry in report["runs"].items():
        for layer, by_method in entry["maps"].items():
            for method, m in by_method.items():
                print(f"{name:>16} {layer:>20} {method:>10}: in/out {m['mean_ratio']:.2f}, "
                      f"{100 * m['energy_in_boxes']:.0f}% of the map on the boxes ({100 * m['box_area']:.0f}% of the image)"
                      if m["mean_ratio"] is not None else f"{name} {layer} {method}: no boxes")
    print("Wrote " + ", ".join(written))
    return 0


def _xyxy(cxcywh, w: int, h: int) -> List[float]:
    cx, cy, bw, bh = cxcywh
    return [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]


if __name__ == "__main__":
    sys.exit(run_main(main))
