"""COCO evaluation of any dataset, backed by faster-coco-eval: the project's one adapter over
detectron2's ``COCOEvaluator`` internals.

:class:`FastCOCOEvaluator` is detectron2's ``COCOEvaluator`` (distributed gathering, category id
unmapping, result tables) whose COCOeval class is ``faster_coco_eval.COCOeval_faster`` when that
package is installed and ``pycocotools.cocoeval.COCOeval`` otherwise. faster-coco-eval is used
through its own classes only (never ``init_as_pycocotools()``, which would patch pycocotools for
the whole process). :func:`build_coco_evaluator` (the ``dataloader.evaluator`` of the dataset
configs) builds it directly.

detectron2's constructor has no argument for the COCOeval class (``use_fast_impl`` picks between
pycocotools and its own C++ one), so this module overrides ``COCOEvaluator._eval_predictions`` and
calls the private ``detectron2.evaluation.coco_evaluation._evaluate_predictions_on_coco``; it is the
only module that touches detectron2's evaluation internals, and
``tests/test_data_coco_evaluator.py`` pins the behaviour it relies on (an upgrade of detectron2
that changes them fails there, not in a training run).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from typing import Callable, Optional

from pycocotools.cocoeval import COCOeval as PycocotoolsCOCOeval

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation.coco_evaluation import _evaluate_predictions_on_coco
from detectron2.utils.file_io import PathManager

from .coco_json import ensure_coco_json
from .datasets.base import ensure_dataset_files, known_dataset_or_raise
from .datasets.catalog import register_dataset

try:  # optional dependency (extras "fast-eval")
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster
except ImportError:  # pragma: no cover - exercised only without faster-coco-eval
    FasterCOCO = COCOeval_faster = None

__all__ = ["FastCOCOEvaluator", "build_coco_evaluator", "faster_cocoeval", "has_faster_coco_eval"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "faster_coco_eval", "pycocotools")


def has_faster_coco_eval() -> bool:
    return COCOeval_faster is not None


def faster_cocoeval(coco_gt, coco_dt, iou_type: str):
    """``cocoeval_fn`` for detectron2's ``_evaluate_predictions_on_coco`` using COCOeval_faster.

    detectron2 builds pycocotools ``COCO`` objects; faster-coco-eval's C++ core wants its own
    ``COCO``, so the two datasets are re-wrapped (no file I/O, no global patching).
    """
    gt = coco_gt if isinstance(coco_gt, FasterCOCO) else _to_faster_coco(coco_gt.dataset)
    dt = coco_dt if isinstance(coco_dt, FasterCOCO) else _to_faster_coco(coco_dt.dataset)
    return COCOeval_faster(gt, dt, iou_type, print_function=logger.debug)


def _to_faster_coco(dataset: dict):
    coco = FasterCOCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


class FastCOCOEvaluator(COCOEvaluator):
    """detectron2 ``COCOEvaluator`` whose metrics come from faster-coco-eval (or pycocotools).

    Images without a prediction entry (the test loader skipped them: unreadable) are left out of
    the evaluation; ``results["images"]`` says how many were evaluated and skipped.

    Args:
        dataset_name, tasks, distributed, output_dir, max_dets_per_image, allow_cached_coco:
            as in ``COCOEvaluator``.
        backend: "auto" (faster-coco-eval when installed), "faster_coco_eval" or "pycocotools".
    """

    def __init__(self, dataset_name: str, tasks=("bbox",), distributed: bool = True,
                 output_dir: Optional[str] = None, *, max_dets_per_image=None,
                 allow_cached_coco: bool = True, backend: str = "auto"):
        super().__init__(
            dataset_name, tasks=tasks, distributed=distributed, output_dir=output_dir,
            max_dets_per_image=max_dets_per_image, use_fast_impl=False,
            allow_cached_coco=allow_cached_coco,
        )
        if backend not in BACKENDS:
            raise ValueError(f"backend must be auto, faster_coco_eval or pycocotools, got {backend!r}")
        if backend == "faster_coco_eval" and not has_faster_coco_eval():
            raise ImportError("backend='faster_coco_eval' needs `pip install faster-coco-eval`.")
        use_faster = backend == "faster_coco_eval" or (backend == "auto" and has_faster_coco_eval())
        self.backend = "faster_coco_eval" if use_faster else "pycocotools"
        self.cocoeval_fn: Callable = faster_cocoeval if use_faster else PycocotoolsCOCOeval

    def _eval_predictions(self, predictions, img_ids=None):
        # Images the test loader skipped (unreadable) have no prediction entry: evaluate the others.
        evaluated = {p["image_id"] for p in predictions}
        total = len(self._coco_api.getImgIds())
        if img_ids is None and len(evaluated) < total:
            img_ids = sorted(evaluated)
            if self.backend == "faster_coco_eval":  # it reads image ids as ints (e.g. VOC's "000005")
                img_ids = [int(i) for i in img_ids]
            self._logger.warning(f"Evaluating {len(evaluated)} of the {total} test images: the others "
                                 "were not read (see the warnings of the test loader).")
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        id_map = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if id_map:
            num_classes = len(id_map)
            reverse = {v: k for k, v in id_map.items()}
            for result in coco_results:
                if not 0 <= result["category_id"] < num_classes:
                    raise ValueError(
                        f"A prediction has class {result['category_id']} but the dataset has "
                        f"{num_classes} classes: the model's num_classes does not match the data."
                    )
                result["category_id"] = reverse[result["category_id"]]
        if self._output_dir:
            with PathManager.open(os.path.join(self._output_dir, "coco_instances_results.json"), "w") as f:
                f.write(json.dumps(coco_results))
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        self._logger.info(f"Evaluating predictions with {self.backend} ...")
        for task in sorted(tasks):
            coco_eval = (
                _evaluate_predictions_on_coco(
                    self._coco_api, coco_results, task,
                    kpt_oks_sigmas=self._kpt_oks_sigmas,
                    cocoeval_fn=self.cocoeval_fn,
                    img_ids=img_ids,
                    max_dets_per_image=self._max_dets_per_image,
                )
                if coco_results
                else None  # COCO API fails on empty results; detectron2 reports NaN then
            )
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )
        self._results["images"] = {"evaluated": len(evaluated), "skipped": total - len(evaluated)}


def build_coco_evaluator(
    dataset_name: str,
    json_file: Optional[str] = None,
    image_root: Optional[str] = None,
    output_dir: Optional[str] = None,
    distributed: bool = True,
    max_dets_per_image: Optional[int] = None,
    backend: str = "auto",
) -> FastCOCOEvaluator:
    """The :class:`FastCOCOEvaluator` (bbox) of ``dataset_name``.

    ``json_file``/``image_root`` register a COCO-format dataset first (as the test dataset config
    does); other datasets must be registered (the test loader or ``prepare_datasets`` did it).
    """
    if json_file is not None and image_root is not None:
        register_dataset(dataset_name, json_file=json_file, image_root=image_root)
    known_dataset_or_raise(dataset_name)
    ensure_dataset_files(dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "thing_classes") or (
        getattr(meta, "json_file", None) and not hasattr(meta, "thing_dataset_id_to_contiguous_id")
    ):
        DatasetCatalog.get(dataset_name)  # loading sets the classes and the dataset-id mapping
    ensure_coco_json(dataset_name)
    return FastCOCOEvaluator(
        dataset_name, tasks=("bbox",), distributed=distributed, output_dir=output_dir,
        max_dets_per_image=max_dets_per_image, backend=backend,
    )
