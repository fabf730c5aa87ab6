"""Where a detector errs: every number behind the evaluation figures of a paper, from a COCO
ground-truth json and a COCO results json (``coco_instances_results.json``).

Which library computes which number (nothing below re-implements COCO matching or TIDE):

* COCO AP / AR, per-class AP, AP by object size, precision-recall curves at IoU 0.5 and 0.75:
  the ``precision`` array and ``stats`` of faster-coco-eval's ``COCOeval_faster`` (the arrays of
  pycocotools' ``COCOeval``; standard parameters: 10 IoUs, 101 recall points, 100 detections per
  image).
* Precision / recall / F1 against the score threshold: detections are matched to the ground truth
  by faster-coco-eval (``Curves``: IoU 0.5, class-aware, every detection of an image); the
  counts of true and false positives above each threshold are made here.
* Confusion matrix with a background row and column: faster-coco-eval's
  ``PreviewResults.compute_confusion_matrix`` (class-agnostic matching at the chosen IoU of the
  detections scoring at least the chosen threshold), laid out as rows = ground truth,
  columns = prediction.
* Error breakdown: ``tidecv`` (TIDE, Bolya et al., ECCV 2020), the AP50 gained by fixing each
  error type (classification, localisation, both, duplicate, background, missed) and by
  removing all false positives / recovering all false negatives.

AP numbers are in percent (as detectron2 reports them); precision, recall, F1 and thresholds are
fractions in [0, 1].
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, PathNotFoundError

__all__ = [
    "SIZES",
    "TIDE_MAIN_ERRORS",
    "TIDE_SPECIAL_ERRORS",
    "analyze_detections",
    "check_same_classes",
    "json_safe",
    "ap_by_size",
    "coco_evaluation",
    "confusion_matrix",
    "load_coco_pair",
    "pr_curves",
    "threshold_curves",
    "tide_errors",
]

logger = logging.getLogger(__name__)

SIZES = ("small", "medium", "large")  # COCOeval's area ranges after "all"
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
TIDE_MAIN_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_SPECIAL_ERRORS = ("FalsePos", "FalseNeg")
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


def _read_json(path: str, what: str) -> Any:
    if not os.path.isfile(path):
        raise PathNotFoundError(f"The {what} '{path}' does not exist.")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"The {what} '{path}' is not valid JSON ({e}).") from None


def load_coco_pair(gt_json: str, dt_json: str):
    """faster-coco-eval ``COCO`` objects of the ground truth and of the detections, and the two
    files' contents.

    Raises DataError for a results file that is not a non-empty list of detections of the ground
    truth's images and categories (with what is wrong and where).
    """
    from faster_coco_eval import COCO

    gt_data = _read_json(gt_json, "ground-truth json")
    dets = _read_json(dt_json, "detections json")
    if not isinstance(gt_data, dict) or not {"images", "annotations", "categories"} <= set(gt_data):
        raise DataError(f"'{gt_json}' is not a COCO ground-truth json (needs images, annotations, categories).")
    if not isinstance(dets, list) or not dets:
        raise DataError(f"'{dt_json}' holds no detections: a COCO results json is a non-empty list of "
                        "{image_id, category_id, bbox, score}.")
    missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in dets[0]]
    if missing:
        raise DataError(f"'{dt_json}': detections lack {missing} (a COCO results json has image_id, "
                        "category_id, bbox [x, y, w, h], score).")
    images = {im["id"] for im in gt_data["images"]}
    cats = {c["id"] for c in gt_data["categories"]}
    bad_img = sorted({d["image_id"] for d in dets} - images, key=str)
    bad_cat = sorted({d["category_id"] for d in dets} - cats, key=str)
    if bad_img or bad_cat:
        raise DataError(
            f"'{dt_json}' does not belong to '{gt_json}': "
            + (f"image ids {bad_img[:5]} are not among its {len(images)} images; " if bad_img else "")
            + (f"category ids {bad_cat[:5]} are not among its categories {sorted(cats)}" if bad_cat else "")
        )
    with contextlib.redirect_stdout(io.StringIO()):  # faster-coco-eval prints loading messages
        gt = COCO(gt_json)
        dt = gt.loadRes(dets)
    return gt, dt, gt_data, dets


def class_names_of(gt) -> List[str]:
    """Category names in COCOeval's order (sorted category id)."""
    return [gt.cats[c]["name"] for c in sorted(gt.cats)]


def coco_evaluation(gt, dt):
    """faster-coco-eval's ``COCOeval_faster`` on the standard bbox parameters, accumulated and
    summarized (``.eval["precision"]``: (T=10 IoUs, R=101 recalls, K classes, A=4 areas, M=3
    max-dets), ``.stats``: the 12 COCO numbers in [0, 1])."""
    from faster_coco_eval import COCOeval_faster

    evaluation = COCOeval_faster(gt, dt, "bbox", print_function=logger.debug)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation


def _mean_valid(a: np.ndarray) -> float:
    valid = a[a > -1]
    return float(np.mean(valid)) * 100 if valid.size else float("nan")


def _iou_index(evaluation, iou: float) -> int:
    ious = np.asarray(evaluation.params.iouThrs)
    idx = np.flatnonzero(np.isclose(ious, iou))
    if not idx.size:
        raise ValueError(f"IoU {iou} is not one of COCOeval's thresholds {ious.tolist()}.")
    return int(idx[0])


def coco_metrics(evaluation, class_names: Sequence[str]) -> Dict[str, Any]:
    """The 12 COCO numbers and per-class AP / AP50 / AP75 (percent; NaN: class without ground truth)."""
    precision = evaluation.eval["precision"]  # (T, R, K, A, M)
    stats = {name: float(v) * 100 for name, v in zip(STAT_NAMES, evaluation.stats)}
    stats = {k: (v if v >= 0 else float("nan")) for k, v in stats.items()}  # -100: nothing of that size
    i50, i75 = _iou_index(evaluation, 0.5), _iou_index(evaluation, 0.75)
    per_class = {}
    for k, name in enumerate(class_names):
        per_class[name] = {
            "AP": _mean_valid(precision[:, :, k, 0, -1]),
            "AP50": _mean_valid(precision[i50, :, k, 0, -1]),
            "AP75": _mean_valid(precision[i75, :, k, 0, -1]),
        }
    return {"overall": stats, "per_class": per_class}


def ap_by_size(evaluation, class_names: Sequence[str]) -> Dict[str, Any]:
    """AP (IoU 0.5:0.95) per COCO area range (small < 32², medium < 96², large), overall and per
    class, with the number of ground-truth boxes in each range (percent; NaN where none)."""
    precision = evaluation.eval["precision"]
    labels = list(evaluation.params.areaRngLbl)
    out: Dict[str, Any] = {"overall": {}, "per_class": {n: {} for n in class_names}, "num_gt": {}}
    gt_areas = [a for a in evaluation.cocoGt.anns.values() if not a.get("iscrowd", 0)]
    for size in SIZES:
        a = labels.index(size)
        lo, hi = evaluation.params.areaRng[a]
        out["overall"][size] = _mean_valid(precision[:, :, :, a, -1])
        out["num_gt"][size] = sum(1 for g in gt_areas if lo <= g["area"] < hi)
        for k, name in enumerate(class_names):
            out["per_class"][name][size] = _mean_valid(precision[:, :, k, a, -1])
    return out


def pr_curves(evaluation, class_names: Sequence[str], ious: Sequence[float] = (0.5, 0.75)) -> Dict[str, Any]:
    """COCO's interpolated precision at its 101 recall points, all areas, 100 detections:
    ``{"recall": [101], "iou50": {"overall": [101], "per_class": {name: [101] or None}}, ...}``.

    "overall" is the mean over the classes that have ground truth, point by point: its mean is
    the AP at that IoU.
    """
    precision = evaluation.eval["precision"]
    out: Dict[str, Any] = {"recall": [float(r) for r in evaluation.params.recThrs]}
    for iou in ious:
        p = precision[_iou_index(evaluation, iou), :, :, 0, -1]  # (R, K)
        valid = (p > -1).all(0)
        per_class = {name: (p[:, k].tolist() if valid[k] else None) for k, name in enumerate(class_names)}
        overall = p[:, valid].mean(1).tolist() if valid.any() else None
        out[f"iou{int(round(iou * 100))}"] = {"overall": overall, "per_class": per_class}
    return out


def _prf(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> Dict[str, List[Optional[float]]]:
    """Precision, recall and F1 of the detections scoring >= each of THRESHOLDS."""
    order = np.argsort(-scores, kind="stable")
    tp, scores = tp[order], scores[order]
    # detections with score >= t: the first n(t) in descending order
    n = np.searchsorted(-scores, -THRESHOLDS, side="right")
    ctp = np.concatenate([[0], np.cumsum(tp)])[n]
    precision = [float(c / k) if k else None for c, k in zip(ctp, n)]
    recall = [float(c / num_gt) if num_gt else None for c in ctp]
    f1 = []
    for p, r in zip(precision, recall):
        if p is None or r is None:
            f1.append(0.0 if r is not None else None)
        else:
            f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}


def _best(curve: Dict[str, List[Optional[float]]]) -> Optional[Dict[str, float]]:
    f1 = [v if v is not None else -1.0 for v in curve["f1"]]
    if max(f1) < 0:
        return None
    i = int(np.argmax(f1))  # the lowest threshold among equal F1s
    return {"threshold": float(THRESHOLDS[i]), "f1": curve["f1"][i], "precision": curve["precision"][i],
            "recall": curve["recall"][i]}


def threshold_curves(gt, dt, class_names: Sequence[str], iou: float = 0.5) -> Dict[str, Any]:
    """Precision, recall and F1 of the detections scoring at least each threshold in 0, 0.01 ...
    1, all classes pooled ("all": one threshold for the deployed detector) and per class, with
    the threshold of the best F1 of each. Matches: faster-coco-eval (class-aware, at ``iou``)."""
    from faster_coco_eval.extra import Curves

    with contextlib.redirect_stdout(io.StringIO()):
        curves = Curves(gt, dt, iouType="bbox", iou_tresh=iou, useCats=True)
    cat_ids = sorted(gt.cats)
    num_gt = {c: 0 for c in cat_ids}
    for g in curves.cocoGt.anns.values():
        if not g.get("iscrowd", 0) and not g.get("ignore", 0):
            num_gt[g["category_id"]] += 1
    dets = list(curves.cocoDt.anns.values())
    tp = np.array([bool(d.get("tp")) for d in dets])
    scores = np.array([float(d["score"]) for d in dets])
    classes = np.array([d["category_id"] for d in dets])
    out: Dict[str, Any] = {"iou": iou, "thresholds": THRESHOLDS.tolist(), "per_class": {}}
    out["all"] = _prf(tp, scores, sum(num_gt.values()))
    out["all"]["best"] = _best(out["all"])
    for c, name in zip(cat_ids, class_names):
        sel = classes == c
        curve = _prf(tp[sel], scores[sel], num_gt[c])
        curve["best"] = _best(curve)
        curve["num_gt"] = num_gt[c]
        curve["num_detections"] = int(sel.sum())
        out["per_class"][name] = curve
    return out


def confusion_matrix(gt, dt, class_names: Sequence[str], iou: float = 0.5, score: float = 0.5) -> Dict[str, Any]:
    """(K+1) x (K+1) counts, rows = ground-truth class then "background", columns = predicted
    class then "background", of the detections with ``score >= score`` matched class-agnostically
    at ``iou`` (faster-coco-eval): row i, column j < K: a box of class i found as class j; column K:
    boxes of class i not found; row K: detections of class j on no box."""
    from faster_coco_eval.extra import PreviewResults

    with contextlib.redirect_stdout(io.StringIO()):
        preview = PreviewResults(gt, dt, iouType="bbox", min_score=score, iou_tresh=iou, useCats=False)
        cm = preview.compute_confusion_matrix()  # (K, K + 2): classes, then FP, FN per class
    k = len(class_names)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    matrix[:k, :k] = cm[:, :k]
    matrix[:k, k] = cm[:, k + 1]  # missed boxes of each class
    matrix[k, :k] = cm[:, k]  # detections of each class on background
    return {"iou": iou, "score_threshold": score, "labels": list(class_names) + ["background"],
            "matrix": matrix.tolist()}


def tide_errors(gt_data: Dict[str, Any], detections: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """TIDE (``tidecv``) at IoU 0.5 (background below 0.1): its AP50 and the dAP (AP50 points
    gained) of fixing each main error type and the special ones, and how many errors of each.

    Args:
        gt_data: a COCO ground-truth json's content (boxes only are needed: tidecv's own loader
            wants segmentations); crowd boxes become TIDE ignore regions.
        detections: a COCO results json's content.
    """
    from tidecv import TIDE, Data

    gt = Data("gt")
    for c in gt_data["categories"]:
        gt.add_class(c["id"], c["name"])
    for im in gt_data["images"]:
        gt.add_image(im["id"], im.get("file_name", str(im["id"])))
    for a in gt_data["annotations"]:
        if a.get("iscrowd", 0):
            gt.add_ignore_region(a["image_id"], a["category_id"], a["bbox"])
        else:
            gt.add_ground_truth(a["image_id"], a["category_id"], a["bbox"])
    dets = Data("run")
    for d in detections:
        dets.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
    import matplotlib

    # TIDE() sets a seaborn style globally (its plotter): keep matplotlib's settings as they were
    with contextlib.redirect_stdout(io.StringIO()), matplotlib.rc_context():
        tide = TIDE()
        run = tide.evaluate(gt, dets, mode=TIDE.BOX, name="run")
        errors = tide.get_all_errors()
    counts = {name: 0 for name in TIDE_MAIN_ERRORS}
    for error in run.errors:
        counts[error.short_name] = counts.get(error.short_name, 0) + 1
    return {
        "pos_threshold": run.pos_thresh,
        "background_threshold": run.bg_thresh,
        "AP50": float(run.ap),
        "dAP": {k: float(errors["main"]["run"][k]) for k in TIDE_MAIN_ERRORS},
        "dAP_special": {k: float(errors["special"]["run"][k]) for k in TIDE_SPECIAL_ERRORS},
        "counts": counts,
    }


def analyze_detections(gt_json: str, dt_json: str, score_threshold: float = 0.5, iou_threshold: float = 0.5,
                       with_tide: bool = True) -> Dict[str, Any]:
    """Every number of the evaluation figures (a JSON-ready dict): ``coco`` (COCO numbers and
    per-class AP), ``pr_curves``, ``threshold_curves``, ``confusion`` (at ``score_threshold`` and
    ``iou_threshold``), ``sizes`` (AP by object size) and ``tide``."""
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 < iou_threshold < 1.0:
        raise ValueError(f"score threshold must be in [0, 1] and IoU in (0, 1), got {score_threshold}, {iou_threshold}.")
    gt, dt, gt_data, dets = load_coco_pair(gt_json, dt_json)
    names = class_names_of(gt)
    evaluation = coco_evaluation(gt, dt)
    result = {
        "gt_json": os.path.abspath(gt_json),
        "detections_json": os.path.abspath(dt_json),
        "num_images": len(gt.imgs),
        "num_gt": sum(1 for a in gt.anns.values() if not a.get("iscrowd", 0)),
        "num_detections": len(dt.anns),
        "class_names": names,
        "coco": coco_metrics(evaluation, names),
        "sizes": ap_by_size(evaluation, names),
        "pr_curves": pr_curves(evaluation, names),
        "threshold_curves": threshold_curves(gt, dt, names, iou=0.5),
        "confusion": confusion_matrix(gt, dt, names, iou=iou_threshold, score=score_threshold),
    }
    if with_tide:
        result["tide"] = tide_errors(gt_data, dets)
    return result


def json_safe(obj: Any) -> Any:
    """NaN / inf -> None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def check_same_classes(analyses: Sequence[Tuple[str, Dict[str, Any]]]) -> None:
    """Runs are compared class by class: they must share the class names (DataError otherwise)."""
    names = [tuple(a["class_names"]) for _, a in analyses]
    if len(set(names)) > 1:
        raise DataError("The runs compared have different classes: "
                        + "; ".join(f"{n}: {list(c)}" for (n, _), c in zip(analyses, names)))
