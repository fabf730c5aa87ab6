"""The figures of a paper, drawn with matplotlib from the numbers of
:mod:`.detection_analysis` (one run, or several compared on the same axes), of a results table
(cost against accuracy, with the Pareto front) and of training logs (mean ± std over seeds).

Every function writes one PNG and returns its path. A run is a ``(name, analysis)`` pair; the
runs compared are told apart by line style (solid, dashed, dotted) or by bar colour, the classes
by their box colours (:func:`.visualize.class_color`).
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .visualize import class_color

__all__ = [
    "pareto_front",
    "plot_ap_by_size",
    "plot_confusion_matrices",
    "plot_cost_accuracy",
    "plot_error_breakdown",
    "plot_pr_curves",
    "plot_seed_curves",
    "plot_threshold_curves",
]

Run = Tuple[str, Dict[str, Any]]
LINE_STYLES = ("-", "--", ":", "-.")
DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    """Write the figure as a PNG of 256 adaptive colours (a third of the size of a full-colour one,
    which matters for heatmap grids kept in a repository or a paper's supplement)."""
    import io

    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    _plt().close(fig)
    Image.open(buf).convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
    return path


def _class_rgb(k: int) -> Tuple[float, float, float]:
    return tuple(v / 255 for v in class_color(k))


def _fmt(v: Optional[float], digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def plot_pr_curves(runs: Sequence[Run], path: str) -> str:
    """Two panels (IoU 0.5, IoU 0.75): COCO's interpolated precision against recall per class
    (thin, class colours) and averaged over classes (thick black, its mean is the AP)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, key, iou in zip(axes, ("iou50", "iou75"), ("0.5", "0.75")):
        for r, (name, a) in enumerate(runs):
            ls = LINE_STYLES[r % len(LINE_STYLES)]
            curves = a["pr_curves"]
            recall = curves["recall"]
            prefix = f"{name}: " if len(runs) > 1 else ""
            for k, cname in enumerate(a["class_names"]):
                p = curves[key]["per_class"][cname]
                if p is not None:
                    ap = a["coco"]["per_class"][cname]["AP50" if key == "iou50" else "AP75"]
                    ax.plot(recall, p, ls, color=_class_rgb(k), lw=1.1,
                            label=f"{prefix}{cname} {_fmt(ap)}" if r == 0 or len(a["class_names"]) <= 5 else None)
            if curves[key]["overall"] is not None:
                ap = a["coco"]["overall"]["AP50" if key == "iou50" else "AP75"]
                ax.plot(recall, curves[key]["overall"], ls, color="black", lw=2.4, label=f"{prefix}all classes {_fmt(ap)}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"precision-recall at IoU {iou} (legend: AP{'50' if key == 'iou50' else '75'})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def plot_threshold_curves(runs: Sequence[Run], path: str) -> str:
    """Three panels: precision, recall and F1 (IoU 0.5) against the score threshold, all classes
    pooled (thick) and per class (thin); the threshold of the best pooled F1 is marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for r, (name, a) in enumerate(runs):
        ls = LINE_STYLES[r % len(LINE_STYLES)]
        tc = a["threshold_curves"]
        t = np.asarray(tc["thresholds"])
        prefix = f"{name}: " if len(runs) > 1 else ""
        for ax, metric in zip(axes, ("precision", "recall", "f1")):
            for k, cname in enumerate(a["class_names"]):
                y = np.array([np.nan if v is None else v for v in tc["per_class"][cname][metric]], float)
                ax.plot(t, y, ls, color=_class_rgb(k), lw=0.9, alpha=0.8,
                        label=f"{prefix}{cname}" if metric == "f1" else None)
            y = np.array([np.nan if v is None else v for v in tc["all"][metric]], float)
            ax.plot(t, y, ls, color="black", lw=2.2, label=f"{prefix}all classes" if metric == "f1" else None)
            best = tc["all"]["best"]
            if best is not None:
                ax.axvline(best["threshold"], color="black", ls=ls, lw=0.8, alpha=0.6)
                if metric == "f1":
                    ax.plot([best["threshold"]], [best["f1"]], "o", color="tab:red", ms=7)
                    ax.annotate(f"{prefix}best F1 {best['f1']:.3f}\nat score {best['threshold']:.2f}",
                                (best["threshold"], best["f1"]), textcoords="offset points",
                                xytext=(8, -28 - 26 * r), fontsize=8, color="tab:red")
    for ax, metric in zip(axes, ("precision", "recall", "F1")):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("score threshold")
        ax.set_title(f"{metric} (IoU 0.5) vs score threshold")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrices(runs: Sequence[Run], path: str) -> str:
    """One panel per run: counts of ground-truth class (rows) found as predicted class (columns),
    with a background row (false positives) and column (missed boxes); colour = share of the row."""
    plt = _plt()
    n = len(runs)
    k1 = len(runs[0][1]["confusion"]["labels"])
    side = max(4.2, 0.55 * k1 + 2.2)
    fig, axes = plt.subplots(1, n, figsize=(side * n, side * 0.92), squeeze=False)
    for ax, (name, a) in zip(axes[0], runs):
        conf = a["confusion"]
        m = np.asarray(conf["matrix"], dtype=float)
        rows = m.sum(1, keepdims=True)
        share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.6 else "black")
        labels = conf["labels"]
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        title = f"score >= {conf['score_threshold']:.2f}, IoU >= {conf['iou']:.2f}"
        ax.set_title(f"{name}\n{title}" if n > 1 else f"confusion matrix\n{title}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_error_breakdown(runs: Sequence[Run], path: str) -> str:
    """TIDE: AP50 points gained by fixing each error type (left) and by removing every false
    positive / recovering every missed box (right); one bar colour per run."""
    from .detection_analysis import TIDE_MAIN_ERRORS, TIDE_SPECIAL_ERRORS

    plt = _plt()
    fig, (ax_main, ax_special) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(runs)
    for r, (name, a) in enumerate(runs):
        tide = a["tide"]
        for ax, keys, field in ((ax_main, TIDE_MAIN_ERRORS, "dAP"), (ax_special, TIDE_SPECIAL_ERRORS, "dAP_special")):
            x = np.arange(len(keys)) + (r - (len(runs) - 1) / 2) * width
            vals = [tide[field][k] for k in keys]
            bars = ax.bar(x, vals, width, color=f"C{r}", label=f"{name} (TIDE AP50 {tide['AP50']:.1f})")
            for b, v in zip(bars, vals):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    names = {"Cls": "classification", "Loc": "localisation", "Both": "cls + loc", "Dupe": "duplicate",
             "Bkg": "background", "Miss": "missed", "FalsePos": "false pos.", "FalseNeg": "false neg."}
    for ax, keys, title in ((ax_main, TIDE_MAIN_ERRORS, "dAP50 of fixing each error (TIDE)"),
                            (ax_special, TIDE_SPECIAL_ERRORS, "dAP50, special")):
        ax.set_xticks(range(len(keys)), [names[k] for k in keys], fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1] * 1.12))
    ax_main.set_ylabel("AP50 points")
    ax_main.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_ap_by_size(runs: Sequence[Run], path: str) -> str:
    """AP (IoU 0.5:0.95) by object size (left; the number of boxes of each size under the bars)
    and by class (right); one bar colour per run."""
    from .detection_analysis import SIZES

    plt = _plt()
    classes = runs[0][1]["class_names"]
    fig, (ax_size, ax_cls) = plt.subplots(
        1, 2, figsize=(6 + 0.55 * len(classes) * max(1, len(runs) / 2), 3.8),
        gridspec_kw={"width_ratios": [len(SIZES) + 1, len(classes) + 1]})
    width = 0.8 / len(runs)
    for r, (name, a) in enumerate(runs):
        off = (r - (len(runs) - 1) / 2) * width
        for ax, keys, vals in (
            (ax_size, SIZES, [a["sizes"]["overall"][s] for s in SIZES]),
            (ax_cls, classes, [a["coco"]["per_class"][c]["AP"] for c in classes]),
        ):
            missing = [v is None or math.isnan(v) for v in vals]
            vals = [0.0 if m else v for v, m in zip(vals, missing)]
            bars = ax.bar(np.arange(len(keys)) + off, vals, width, color=f"C{r}",
                          label=f"{name} (AP {_fmt(a['coco']['overall']['AP'])})")
            for b, v, m in zip(bars, vals, missing):
                ax.annotate("n/a" if m else f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7)
    counts = runs[0][1]["sizes"]["num_gt"]
    ax_size.set_xticks(range(len(SIZES)), [f"{s}\n({counts[s]} boxes)" for s in SIZES], fontsize=8)
    ax_cls.set_xticks(range(len(classes)), classes, rotation=30 if len(classes) > 6 else 0, fontsize=8)
    ax_size.set_title("AP by object size (COCO areas)")
    ax_cls.set_title("AP by class")
    for ax in (ax_size, ax_cls):
        ax.set_ylim(0, 105)
        ax.set_ylabel("AP (%)")
        ax.grid(alpha=0.3, axis="y")
    ax_size.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- cost vs accuracy
def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> List[int]:
    """Indices of the points no other point beats (cost <= and score >=, one of them strictly),
    by increasing cost."""
    pts = sorted(range(len(costs)), key=lambda i: (costs[i], -scores[i]))
    front, best = [], -math.inf
    for i in pts:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return front


def plot_cost_accuracy(points: Sequence[Dict[str, Any]], x_label: str, y_label: str, path: str,
                       title: str = "", log_x: bool = False) -> str:
    """Accuracy against cost (``points``: {"name", "x", "y", optional "y_std", "group"}), a
    marker per point (error bar for ``y_std``), one colour per group, the Pareto front as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.8))
    groups = list(dict.fromkeys(p.get("group") or "" for p in points))
    for g, group in enumerate(groups):
        sel = [p for p in points if (p.get("group") or "") == group]
        ax.errorbar([p["x"] for p in sel], [p["y"] for p in sel], yerr=[p.get("y_std") or 0 for p in sel],
                    fmt="o", ms=7, capsize=3, color=f"C{g}", label=group or None)
        for p in sel:
            ax.annotate(p["name"], (p["x"], p["y"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = pareto_front([p["x"] for p in points], [p["y"] for p in points])
    ax.plot([points[i]["x"] for i in front], [points[i]["y"] for i in front], "-", color="gray", lw=1.2,
            alpha=0.8, zorder=0, label="Pareto front")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title or f"{y_label} vs {x_label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    x0, x1 = ax.get_xlim()
    if not log_x:
        ax.set_xlim(x0, x1 + 0.15 * (x1 - x0))  # room for the labels of the rightmost points
    fig.tight_layout()
    return _save(fig, path)


def plot_seed_curves(groups: Sequence[Tuple[str, Sequence[Tuple[np.ndarray, np.ndarray]]]], path: str,
                     y_label: str, title: str = "", log_y: bool = False) -> str:
    """One line per group: the mean over its runs (seeds) of a logged metric against the
    iteration, with a ±1 std band (sample std; iterations logged by every run of the group)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for g, (name, series) in enumerate(groups):
        common = sorted(set.intersection(*[set(it.tolist()) for it, _ in series])) if series else []
        if not common:
            continue
        ys = np.stack([np.interp(common, it, val) for it, val in series])
        mean = ys.mean(0)
        ax.plot(common, mean, color=f"C{g}", lw=1.6, marker="o" if len(common) < 12 else None, ms=4,
                label=f"{name} ({len(series)} run{'s' if len(series) > 1 else ''})")
        if len(series) > 1:
            std = ys.std(0, ddof=1)
            ax.fill_between(common, mean - std, mean + std, color=f"C{g}", alpha=0.2, lw=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(y_label)
    ax.set_title(title or f"{y_label}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- heatmaps
def plot_image_grid(cells: Sequence[Sequence[np.ndarray]], path: str, col_titles: Sequence[str] = (),
                    row_titles: Sequence[str] = (), notes: Optional[Sequence[Sequence[str]]] = None,
                    title: str = "", cell_inches: float = 2.6) -> str:
    """Images (uint8 RGB) in a grid, with column titles, row titles and a note under each cell."""
    plt = _plt()
    rows, cols = len(cells), max(len(r) for r in cells)
    fig, axes = plt.subplots(rows, cols, figsize=(cell_inches * cols, cell_inches * rows + (0.4 if title else 0.1)),
                             squeeze=False)
    for i, row in enumerate(cells):
        for j in range(cols):
            ax = axes[i][j]
            ax.axis("off")
            if j >= len(row):
                continue
            ax.imshow(row[j])
            if i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0 and i < len(row_titles):
                ax.text(-0.04, 0.5, row_titles[i], transform=ax.transAxes, rotation=90, ha="right", va="center",
                        fontsize=8)
            if notes is not None and notes[i][j]:
                ax.text(0.5, -0.02, notes[i][j], transform=ax.transAxes, ha="center", va="top", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_deformable_attention(rows: Sequence[Dict[str, Any]], path: str, cell_inches: float = 2.6) -> str:
    """One row per (model, image, query): the query's box on the image and, per feature level, its
    sampling points (all heads) coloured and sized by attention weight; the last column shows
    all levels together. ``rows``: {"image": uint8 RGB, "box": XYXY pixels, "title": str,
    "levels": [{"xy": (P, 2) normalized, "weight": (P,)}]}."""
    plt = _plt()
    num_levels = max(len(r["levels"]) for r in rows)
    cols = num_levels + 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell_inches * cols, cell_inches * len(rows)), squeeze=False)
    vmax = max(float(np.max(lv["weight"])) for r in rows for lv in r["levels"])
    for i, r in enumerate(rows):
        h, w = r["image"].shape[:2]
        for j in range(cols):
            ax = axes[i][j]
            ax.imshow(r["image"])
            ax.set_xticks([])
            ax.set_yticks([])
            x0, y0, x1, y1 = r["box"]
            ax.add_patch(_plt().Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1.2))
            levels = list(range(len(r["levels"]))) if j == num_levels else [j]
            for lvl in levels:
                lv = r["levels"][lvl]
                order = np.argsort(lv["weight"])
                xy, wt = lv["xy"][order], lv["weight"][order]
                ax.scatter(xy[:, 0] * w, xy[:, 1] * h, s=8 + 120 * wt / vmax, c=wt, cmap="plasma", vmin=0, vmax=vmax,
                           marker="o" if j != num_levels else "os^D"[lvl % 4], edgecolors="none", alpha=0.9)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            if j < num_levels:
                share = float(np.sum(r["levels"][j]["weight"])) / max(float(sum(np.sum(lv["weight"]) for lv in r["levels"])), 1e-12)
                shape = r["levels"][j].get("shape")
                ax.set_title(f"level {j} ({shape[0]}x{shape[1]}): {100 * share:.0f}%" if shape else f"level {j}",
                             fontsize=8)
            else:
                ax.set_title("all levels", fontsize=8)
            if j == 0:
                ax.set_ylabel(r["title"], fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
