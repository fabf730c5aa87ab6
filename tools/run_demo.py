#!/usr/bin/env python
"""The one-command demo (``make demo``): train a small MLLA-RT-DETR (MLLA backbone and MLLA
encoder) from scratch on the embedded ``synthetic_shapes`` dataset on the CPU, evaluate it with
COCO metrics, and leave everything in one folder::

    python tools/run_demo.py --output-dir output/demo
    python tools/run_demo.py --output-dir output/quick --max-iter 50     # a quick look
    python tools/run_demo.py --check-ap50 50                              # exit 1 if AP50 < 50
    python tools/run_demo.py train.seed=1 optimizer.lr=2e-3               # config overrides

Steps: generate the dataset (first run only), train in this process with
:func:`mlla_rtdetr.engine.do_train` (log with ETA, periodic evaluations), plot the loss and AP
curves from ``metrics.json``, draw ground truth and predictions on validation images, and print a
summary. The output folder holds ``config.yaml``, ``model_final.pth`` (and periodic / best
checkpoints), ``metrics.json``, ``events.out.tfevents.*`` (TensorBoard), ``log.txt``,
``eval_results.json``, ``training_curves.png``, ``val_predictions/*.png`` and ``summary.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

from mlla_rtdetr.errors import run_main
from mlla_rtdetr.utils.console import tool_log

DEFAULT_CONFIG = "projects/mlla_rtdetr/configs/mlla_rtdetr_demo_synthetic.py"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


log = tool_log("run_demo", to_stdout=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a small MLLA-RT-DETR on the embedded synthetic_shapes dataset (CPU), "
                    "evaluate it (COCO), plot the curves and draw validation predictions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing key=value arguments override entries of the config (e.g. train.seed=1).",
    )
    parser.add_argument("--output-dir", default="output/demo", help="where every output goes (default: %(default)s)")
    parser.add_argument("--config-file", default=os.path.join(REPO_ROOT, DEFAULT_CONFIG), metavar="FILE",
                        help="the recipe (default: %(default)s)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="training iterations (default: the recipe's train.max_iter)")
    parser.add_argument("--check-ap50", type=float, default=None, metavar="AP50",
                        help="exit with status 1 when the final bbox AP50 (in percent) is below this; "
                             "default: only report it")
    parser.add_argument("--num-vis", type=int, default=8, help="validation images to draw (default: %(default)s)")
    parser.add_argument("--score-threshold", type=float, default=0.5,
                        help="draw predictions with at least this score (default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="key=value",
                        help="config overrides")
    args = parser.parse_args(argv)
    if args.max_iter is not None and args.max_iter <= 0:
        parser.error(f"--max-iter must be positive, got {args.max_iter}")
    if args.num_vis < 0:
        parser.error(f"--num-vis must be >= 0, got {args.num_vis}")
    bad = [o for o in args.opts if "=" not in o]
    if bad:
        parser.error(f"overrides must look like key=value, got {bad}")
    return args


# ----------------------------------------------------------------------------- steps
def headline_task(cfg, results: Dict[str, Dict[str, float]]) -> str:
    """The weights the summary reports: EMA when enabled (those are the evaluated ones)."""
    if cfg.train.model_ema.enabled and "bbox_ema" in results:
        return "bbox_ema"
    if "bbox" in results:
        return "bbox"
    raise RuntimeError(f"The final evaluation returned no box metrics: {sorted(results)}")


def draw_validation_images(cfg, checkpoint: str, out_dir: str, num: int, score_threshold: float,
                           use_ema: bool) -> List[str]:
    """Run the trained model on the first ``num`` test images; write GT + predictions PNGs."""
    import numpy as np
    import torch
    from detectron2.config import instantiate
    from detectron2.data import MetadataCatalog

    from mlla_rtdetr.data import read_image_rgb
    from mlla_rtdetr.engine import build_model
    from mlla_rtdetr.utils.plots import draw_gt_and_predictions, save_png

    if num == 0:
        return []
    dataset_name = cfg.dataloader.test.dataset.names
    dicts = instantiate(cfg.dataloader.test.dataset)[:num]
    meta = MetadataCatalog.get(dataset_name if isinstance(dataset_name, str) else dataset_name[0])
    class_names = list(getattr(meta, "thing_classes", [])) or None
    mapper = instantiate(cfg.dataloader.test.mapper)
    model = build_model(cfg, checkpoint=checkpoint, device="cpu", use_ema=use_ema, deploy=True)
    paths = []
    with torch.no_grad():
        outputs = model([mapper(d) for d in dicts])
    for d, out in zip(dicts, outputs):
        inst = out["instances"].to("cpu")
        image = read_image_rgb(d["file_name"]).permute(1, 2, 0).numpy()  # (H, W, 3) uint8 RGB
        anns = [a for a in d.get("annotations", []) if not a.get("iscrowd", 0)]
        gt = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                           for a in anns], dtype=torch.float32).reshape(-1, 4)
        gt_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        drawn = draw_gt_and_predictions(image, gt, gt_classes, inst.pred_boxes.tensor, inst.scores,
                                        inst.pred_classes, class_names, score_threshold=score_threshold)
        paths.append(save_png(drawn, os.path.join(out_dir, f"val_{int(d['image_id']):06d}.png")))
    return paths


# Files a previous run left that this one would mix with its own (detectron2's JSONWriter
# appends to metrics.json; TensorBoard would show two runs; old checkpoints would stay listed).
PREVIOUS_OUTPUTS = ("metrics.json", "events.out.tfevents.*", "model_*.pth", "last_checkpoint", "summary.json",
                    "eval_results.json", "training_curves.png", "val_predictions/val_*.png")


def clear_previous_outputs(output_dir: str) -> List[str]:
    """Delete the files of a previous demo run in ``output_dir`` (nothing else); returns them."""
    import glob

    removed = []
    for pattern in PREVIOUS_OUTPUTS:
        for path in glob.glob(os.path.join(output_dir, pattern)):
            if os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


def list_outputs(output_dir: str) -> List[str]:
    files = []
    for root, _dirs, names in os.walk(output_dir):
        for n in sorted(names):
            files.append(os.path.relpath(os.path.join(root, n), output_dir))
    return sorted(files)


def median_iter_time(records) -> Optional[float]:
    import numpy as np

    times = [r["time"] for r in records if isinstance(r.get("time"), (int, float)) and r["iteration"] > 0]
    return float(np.median(times)) if times else None


# ----------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    from mlla_rtdetr.engine import TRAINING_SECTIONS, do_train, load_config, prepare_data, setup_process
    from mlla_rtdetr.utils.plots import plot_training_curves, read_metrics_json

    output_dir = os.path.abspath(args.output_dir)
    overrides = list(args.opts) + [f"train.output_dir={output_dir}"]
    if args.max_iter is not None:
        overrides.append(f"train.max_iter={args.max_iter}")
    cfg = load_config(args.config_file, overrides, require=TRAINING_SECTIONS)
    removed = clear_previous_outputs(output_dir)

    setup_process(cfg, args)
    import torch

    if removed:
        log(f"removed {len(removed)} outputs of a previous run in {output_dir}")

    log(f"config {args.config_file}; output {output_dir}; torch threads {torch.get_num_threads()}")
    t_data = time.perf_counter()
    prepare_data(cfg)  # generates the embedded dataset the first time; training takes it over
    dataset_s = time.perf_counter() - t_data
    log(f"datasets ready in {dataset_s:.1f}s")
    t_train = time.perf_counter()
    results = do_train(cfg, resume=False)
    train_s = time.perf_counter() - t_train
    task = headline_task(cfg, results)
    final = results[task]

    t_post = time.perf_counter()
    records = read_metrics_json(os.path.join(output_dir, "metrics.json"))
    title = (f"MLLA-RT-DETR demo on synthetic_shapes: {cfg.train.max_iter} iterations, "
             f"final {task} AP {final['AP']:.1f} / AP50 {final['AP50']:.1f}")
    curves = plot_training_curves(records, os.path.join(output_dir, "training_curves.png"), title=title)
    checkpoint = os.path.join(output_dir, "model_final.pth")
    vis = draw_validation_images(cfg, checkpoint, os.path.join(output_dir, "val_predictions"), args.num_vis,
                                 args.score_threshold, use_ema=task == "bbox_ema")
    post_s = time.perf_counter() - t_post
    wall_s = time.perf_counter() - t_start

    passed = None if args.check_ap50 is None else bool(final["AP50"] >= args.check_ap50)
    summary: Dict[str, Any] = {
        "config": args.config_file,
        "output_dir": output_dir,
        "max_iter": int(cfg.train.max_iter),
        "total_batch_size": int(cfg.dataloader.train.total_batch_size),
        "seed": int(cfg.train.seed),
        "torch_threads": torch.get_num_threads(),
        "task": task,
        "metrics": {k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and math.isfinite(v)},
        "all_results": {t: {k: float(v) for k, v in m.items()} for t, m in results.items()},
        "median_s_per_iter": median_iter_time(records),
        "dataset_s": round(dataset_s, 2),
        "train_and_eval_s": round(train_s, 2),
        "plots_s": round(post_s, 2),
        "wall_s": round(wall_s, 2),
        "check_ap50": args.check_ap50,
        "passed": passed,
        "curves_png": os.path.relpath(curves, output_dir),
        "val_pngs": [os.path.relpath(p, output_dir) for p in vis],
    }
    summary_path = os.path.join(output_dir, "summary.json")
    summary["files"] = sorted(set(list_outputs(output_dir)) | {"summary.json"})
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    print_summary(summary)
    if passed is False:
        print(f"run_demo.py: FAILED: {task} AP50 {final['AP50']:.2f} < --check-ap50 {args.check_ap50}",
              file=sys.stderr)
        return 1
    return 0


def print_summary(s: Dict[str, Any]) -> None:
    m = s["metrics"]
    spi = s["median_s_per_iter"]
    lines = [
        "",
        "=" * 72,
        "MLLA-RT-DETR demo summary",
        f"  final {s['task']}: AP {m.get('AP', float('nan')):.2f}  AP50 {m.get('AP50', float('nan')):.2f}  "
        f"AP75 {m.get('AP75', float('nan')):.2f}",
        f"  {s['max_iter']} iterations x {s['total_batch_size']} images, "
        + (f"{spi:.3f} s/iter (median), " if spi is not None else "")
        + f"{s['torch_threads']} torch threads",
        f"  wall time {s['wall_s'] / 60:.1f} min (dataset {s['dataset_s']:.0f}s, training + evaluation "
        f"{s['train_and_eval_s']:.0f}s, plots {s['plots_s']:.0f}s)",
    ]
    if s["check_ap50"] is not None:
        lines.append(f"  AP50 >= {s['check_ap50']}: {'PASS' if s['passed'] else 'FAIL'}")
    lines.append(f"  output: {s['output_dir']}")
    for f in s["files"]:
        lines.append(f"    {f}")
    lines.append("=" * 72)
    print("\n".join(lines), flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
