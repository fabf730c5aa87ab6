"""The COCO evaluator (mlla_rtdetr.data.coco_evaluator), the one adapter over detectron2's
COCOEvaluator internals: what it relies on in detectron2 is pinned here, and its metrics are those
of pycocotools run by hand on the same ground truth and detections."""
import contextlib
import inspect
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation import coco_evaluation as d2_coco
from detectron2.structures import Boxes, Instances

from engine_utils import CLASSES, IMAGE_SIZE, register_toy, toy_dicts
from mlla_rtdetr.data import FastCOCOEvaluator, build_coco_evaluator

NUM_IMAGES = 10


def test_detectron2_internals_the_adapter_relies_on(tmp_path):
    params = inspect.signature(d2_coco._evaluate_predictions_on_coco).parameters
    assert list(params)[:3] == ["coco_gt", "coco_results", "iou_type"]
    assert {"kpt_oks_sigmas", "cocoeval_fn", "img_ids", "max_dets_per_image"} <= set(params)
    assert list(inspect.signature(COCOEvaluator._eval_predictions).parameters) == ["self", "predictions", "img_ids"]
    assert "self._eval_predictions(predictions, img_ids=img_ids)" in inspect.getsource(COCOEvaluator.evaluate)
    for method in ("_derive_coco_results", "_tasks_from_predictions"):
        assert callable(getattr(COCOEvaluator, method))
    ev = FastCOCOEvaluator(register_toy("coco_adapter_attrs", 4, seed=5), output_dir=str(tmp_path), distributed=False)
    for attr in ("_coco_api", "_metadata", "_tasks", "_kpt_oks_sigmas", "_max_dets_per_image", "_do_evaluation",
                 "_output_dir", "_logger"):
        assert hasattr(ev, attr), attr


def _predictions(dicts, seed=0):
    """Per image: the ground-truth box jittered (right class for most), one false positive;
    distinct scores (no ties in the ranking)."""
    rng = np.random.default_rng(seed)
    inputs, outputs, scores = [], [], iter(rng.permutation(np.linspace(0.05, 0.95, 2 * len(dicts))))
    for i, d in enumerate(dicts):
        x, y, w, h = d["annotations"][0]["bbox"]
        cls = d["annotations"][0]["category_id"]
        jitter = rng.uniform(-2, 2, 4)
        boxes = [[x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]],
                 list(rng.uniform(0, IMAGE_SIZE / 2, 2)) + list(rng.uniform(IMAGE_SIZE / 2, IMAGE_SIZE, 2))]
        inst = Instances((IMAGE_SIZE, IMAGE_SIZE))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.tensor([next(scores), next(scores)], dtype=torch.float32)
        inst.pred_classes = torch.tensor([cls if i % 4 else 1 - cls, int(rng.integers(0, 2))])
        inputs.append({"image_id": d["image_id"], "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        outputs.append({"instances": inst})
    return inputs, outputs


def _pycocotools_by_hand(json_file, results):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_metrics_are_those_of_pycocotools_run_by_hand(tmp_path, backend):
    name = register_toy("coco_adapter_metrics", NUM_IMAGES, seed=11)
    inputs, outputs = _predictions(toy_dicts(name, NUM_IMAGES, seed=11))
    ev = FastCOCOEvaluator(name, output_dir=str(tmp_path), distributed=False, backend=backend)
    assert ev.backend == backend
    ev.reset()
    ev.process(inputs, outputs)
    results = ev.evaluate()
    detections = [r for inp, out in zip(inputs, outputs)  # the toy dataset's ids are its contiguous ids
                  for r in d2_coco.instances_to_coco_json(out["instances"], inp["image_id"])]
    stats = _pycocotools_by_hand(MetadataCatalog.get(name).json_file, detections)
    assert 0 < stats[0] < 1  # neither perfect nor empty: the check can fail
    for i, key in enumerate(["AP", "AP50", "AP75"]):
        assert results["bbox"][key] == pytest.approx(100 * stats[i], abs=1e-9), key
    assert {f"AP-{c}" for c in CLASSES} <= set(results["bbox"])
    assert results["images"] == {"evaluated": NUM_IMAGES, "skipped": 0}


def test_build_coco_evaluator_builds_the_fast_evaluator():
    ev = build_coco_evaluator(register_toy("coco_adapter_build", 4, seed=2), distributed=False)
    assert type(ev) is FastCOCOEvaluator and ev.backend == "faster_coco_eval"


def test_names_saved_config_yaml_files_hold_still_locate():
    """A run's config.yaml names targets by their shortest importable path (detectron2's
    LazyConfig.save): those written before the evaluator moved still find it."""
    from detectron2.utils.registry import locate

    assert locate("mlla_rtdetr.data.build_coco_evaluator") is build_coco_evaluator
    assert locate("mlla_rtdetr.engine.FastCOCOEvaluator") is FastCOCOEvaluator
