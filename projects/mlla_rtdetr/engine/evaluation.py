"""Evaluating models: several weight sets (raw / EMA) under distinct result names, each through its
inference form.

Evaluation runs each model's inference form (:func:`inference_copy`: a ``deploy()``-ed copy, the
same outputs within 1e-4), so the numbers are those of the deployed detector and the training
model is left untouched. The COCO metrics come from the dataset's evaluator
(:class:`mlla_rtdetr.data.FastCOCOEvaluator`).
"""
from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Mapping

import torch

from detectron2.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm

__all__ = [
    "evaluate_model",
    "inference_copy",
    "rename_results",
    "broadcast_state_from_main",
]

logger = logging.getLogger(__name__)


def rename_results(results: Mapping[str, Dict], suffix: str) -> "OrderedDict[str, Dict]":
    """``{"bbox": {...}} -> {"bbox" + suffix: {...}}``."""
    return OrderedDict((f"{task}{suffix}", metrics) for task, metrics in (results or {}).items())


@torch.no_grad()
def broadcast_state_from_main(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank.

    Under DDP each rank keeps its own BatchNorm running statistics (and EMA of them), so sharded
    inference would otherwise mix weights; after this every shard runs rank 0's (saved) weights.
    """
    if comm.get_world_size() == 1:
        return
    import torch.distributed as dist

    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A ``deploy()``-ed copy of ``model`` (eval mode; RepVGG and BatchNorm folding, channels-last
    memory) for inference, or ``model`` itself when it has no ``deploy()``."""
    if not hasattr(model, "deploy"):
        return model
    return copy.deepcopy(model).deploy()


def evaluate_model(
    models: Mapping[str, torch.nn.Module],
    data_loader: Iterable,
    evaluator_factory: Callable[[], DatasetEvaluator],
) -> "OrderedDict[str, Dict]":
    """Evaluate several weight sets on one data loader, each under its own result names.

    Args:
        models: ``{suffix: model}``, e.g. ``{"": raw_model, "_ema": ema_model}``; the results of
            each are reported as ``task + suffix`` ("bbox", "bbox_ema"), never overwriting.
        data_loader: the (sharded) test loader; every rank runs its shard.
        evaluator_factory: returns a fresh evaluator per model.

    Returns:
        merged results on the main process (empty dict on other ranks).
    """
    merged: "OrderedDict[str, Dict]" = OrderedDict()
    for suffix, model in models.items():
        name = "raw" if suffix == "" else suffix.lstrip("_")
        logger.info(f"Evaluating {name} weights ...")
        broadcast_state_from_main(model)
        results = inference_on_dataset(inference_copy(model), data_loader, evaluator_factory())
        renamed = rename_results(results, suffix)
        clash = set(renamed) & set(merged)
        if clash:
            raise ValueError(f"Evaluation result names collide: {sorted(clash)}")
        if comm.is_main_process() and renamed:
            print_csv_format(renamed)
        merged.update(renamed)
    return merged
