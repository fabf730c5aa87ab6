"""Training-curve plots (from detectron2's ``metrics.json``) and ground truth vs prediction
pictures, for ``tools/run_demo.py``.

Boxes are drawn by :func:`.visualize.draw_boxes`; here ground truth and predictions get two fixed,
distinct colours (not per-class colours) so the two sets can be told apart on one picture.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .visualize import class_name, detection_labels, draw_boxes

__all__ = [
    "GT_COLOR",
    "PRED_COLOR",
    "read_metrics_json",
    "metric_series",
    "plot_training_curves",
    "draw_gt_and_predictions",
    "save_png",
]

# Neither colour is a class colour of synthetic_shapes (red, green, blue, yellow, magenta).
GT_COLOR: Tuple[int, int, int] = (255, 255, 255)  # white
PRED_COLOR: Tuple[int, int, int] = (0, 235, 255)  # cyan

LOSS_KEYS = ("total_loss", "loss_vfl", "loss_bbox", "loss_giou")


def read_metrics_json(path: str) -> List[Dict[str, float]]:
    """The records of a detectron2 ``JSONWriter`` file (one JSON object per line).

    A run that was resumed may repeat iterations; the last record of an iteration wins and the
    result is sorted by iteration.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{path}' does not exist: was the training run writing metrics there?")
    by_iter: Dict[int, Dict[str, float]] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no} is not valid JSON ({e}).") from None
            if "iteration" not in record:
                continue
            by_iter.setdefault(int(record["iteration"]), {}).update(record)
    return [by_iter[k] for k in sorted(by_iter)]


def metric_series(records: Sequence[Dict[str, float]], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of the records that hold a finite ``key``."""
    pts = [(r["iteration"], float(r[key])) for r in records
           if key in r and isinstance(r[key], (int, float)) and math.isfinite(float(r[key]))]
    if not pts:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    it, val = zip(*pts)
    return np.asarray(it, np.int64), np.asarray(val, np.float64)


def plot_training_curves(records: Sequence[Dict[str, float]], path: str, title: str = "",
                         tasks: Optional[Sequence[str]] = None) -> str:
    """Three panels: training losses (log scale), learning rate, and COCO AP / AP50 of each
    evaluated weight set (e.g. ``bbox`` = raw, ``bbox_ema`` = EMA) against the iteration.

    Returns ``path`` (a PNG).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if tasks is None:
        tasks = sorted({k.split("/")[0] for r in records for k in r if k.endswith("/AP50")})
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.8), dpi=80)
    ax_loss, ax_lr, ax_ap = axes
    for key in LOSS_KEYS:
        it, val = metric_series(records, key)
        if len(it):
            ax_loss.plot(it, val, marker="o" if len(it) < 3 else None, label=key,
                         lw=1.6 if key == "total_loss" else 1.0)
    ax_loss.set_yscale("log")
    ax_loss.set_title("training loss")
    ax_loss.legend(fontsize=8)
    it, val = metric_series(records, "lr")
    ax_lr.plot(it, val, marker="o" if len(it) < 3 else None, color="tab:gray")
    ax_lr.set_title("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    styles = {"AP": "-", "AP50": "--"}
    for i, task in enumerate(tasks):
        for metric, ls in styles.items():
            it, val = metric_series(records, f"{task}/{metric}")
            if len(it):
                ax_ap.plot(it, val, ls, marker="o", ms=4, color=f"C{i}", label=f"{task} {metric}")
                ax_ap.annotate(f"{val[-1]:.1f}", (it[-1], val[-1]), textcoords="offset points",
                               xytext=(4, 2), fontsize=8, color=f"C{i}")
    ax_ap.set_ylim(0, 100)
    ax_ap.set_title("validation COCO box AP (%)")
    if ax_ap.lines:
        ax_ap.legend(fontsize=8, loc="lower right")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_gt_and_predictions(
    image: np.ndarray,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    pred_boxes: torch.Tensor,
    pred_scores: torch.Tensor,
    pred_classes: torch.Tensor,
    class_names: Optional[Sequence[str]] = None,
    score_threshold: float = 0.5,
    scale: float = 2.0,
    width: int = 2,
    font_size: int = 13,
) -> np.ndarray:
    """Ground truth (white, label "gt <name>" under the box) and predictions with
    ``score >= score_threshold`` (cyan, label "<name> <score>" above the box) on a copy of
    ``image`` enlarged by ``scale`` for legibility. Labels sit on a filled background so they
    read on any colour.

    Args:
        image: (H, W, 3) uint8 RGB.
        gt_boxes: (G, 4) and pred_boxes: (N, 4) absolute XYXY pixels of ``image``;
        gt_classes (G,), pred_scores (N,), pred_classes (N,): contiguous class ids / scores.
    Returns:
        (round(H*scale), round(W*scale), 3) uint8 RGB.
    """
    keep = (pred_scores.detach().cpu() >= score_threshold).numpy()
    gt_classes = gt_classes.reshape(-1).tolist()
    pred_labels = detection_labels(pred_classes.cpu().numpy()[keep].tolist(),
                                   pred_scores.detach().cpu().numpy()[keep].tolist(), class_names)
    boxes = torch.cat([gt_boxes.detach().float().cpu().reshape(-1, 4),
                       pred_boxes.detach().float().cpu().reshape(-1, 4)[torch.from_numpy(keep)]])
    return draw_boxes(
        image, boxes, [f"gt {class_name(c, class_names)}" for c in gt_classes] + pred_labels,
        [GT_COLOR] * len(gt_classes) + [PRED_COLOR] * len(pred_labels), width=width, scale=scale,
        font_size=font_size, label_below=[True] * len(gt_classes) + [False] * len(pred_labels),
    )


def save_png(image: np.ndarray, path: str) -> str:
    """Write an (H, W, 3) uint8 RGB array as an optimized PNG; returns ``path``."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", optimize=True)
    return path
