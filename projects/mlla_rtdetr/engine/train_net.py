"""Training and evaluation of a recipe, as ``tools/train_net.py`` runs them in every process:
:func:`main` -> :func:`do_train` (or :func:`do_eval_only`) -> :func:`do_test`.

:func:`do_train` follows detectron2's ``DefaultTrainer``: builders for the trainer, the hooks and
the writers, then :func:`resume_or_load`, then the loop. The latest evaluation lives on an
:class:`Evaluation`, which the evaluation hook runs and the checkpointers read.
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import instantiate
from detectron2.engine import HookBase, default_writers
from detectron2.engine import hooks as d2_hooks
from detectron2.utils import comm

from ..errors import ConfigError
from .builders import build_ema, build_evaluator, build_lr_multiplier, build_model, build_optimizer
from .checkpointer import BestCheckpointer, Checkpointer, PeriodicCheckpointer
from .classes import check_num_classes, prepare_data
from .init_checkpoint import load_init_checkpoint
from .process import setup_process
from .recipe import TRAINING_SECTIONS, load_config, save_config
from .training_length import TrainingLength, resolve_training_length
from .device import create_ddp_model, device_for_process
from .data_faults import BadImageHook
from .ema import EMAHook, ModelEMA, unwrap_model
from .ema_restart import EMARestartHook
from .evaluation import evaluate_model
from .preemption import PreemptionHook
from .trainer import Trainer

__all__ = [
    "Evaluation",
    "build_trainer",
    "build_hooks",
    "resume_or_load",
    "do_test",
    "do_train",
    "do_eval_only",
    "main",
]

logger = logging.getLogger("mlla_rtdetr.engine")


# ----------------------------------------------------------------------------- evaluation
def do_test(cfg: DictConfig, model: torch.nn.Module, ema: Optional[ModelEMA] = None, test_loader=None):
    """Evaluate EMA weights ("<task>_ema") and/or raw weights ("<task>") on the test set.

    With EMA enabled only the EMA weights are evaluated unless ``train.model_ema.eval_raw``.
    Inference is sharded over processes; metrics are computed on rank 0.
    """
    if "evaluator" not in cfg.dataloader:
        logger.warning("cfg.dataloader.evaluator is not set: skipping evaluation.")
        return {}
    models: "OrderedDict[str, torch.nn.Module]" = OrderedDict()
    eval_raw = ema is None or bool(cfg.train.model_ema.get("eval_raw", False))
    if eval_raw:
        models[""] = unwrap_model(model)
    if ema is not None:
        models["_ema"] = ema.module
    loader = test_loader if test_loader is not None else instantiate(cfg.dataloader.test)
    return evaluate_model(models, loader, lambda: build_evaluator(cfg))


class Evaluation:
    """Evaluates a training run's model (and EMA) and keeps the latest results.

    The evaluation hook calls :meth:`run`; the checkpointers store :meth:`metrics_at` of the
    iteration they save; :func:`do_train` returns :attr:`results`.
    """

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, ema: Optional[ModelEMA], test_loader,
                 output_dir: str):
        self.cfg = cfg
        self.model = model
        self.ema = ema
        self.test_loader = test_loader
        self.output_dir = output_dir
        self.results: Dict[str, Dict[str, float]] = {}
        self.iteration = -1

    def run(self, iteration: int) -> Dict[str, Dict[str, float]]:
        """Evaluate now (after ``iteration``); rank 0 writes ``eval_results.json``."""
        self.results = do_test(self.cfg, self.model, self.ema, self.test_loader)
        self.iteration = iteration
        if comm.is_main_process() and self.results:
            with open(os.path.join(self.output_dir, "eval_results.json"), "w") as f:
                json.dump({"iteration": iteration, "results": self.results}, f, indent=1)
        return self.results

    def metrics_at(self, iteration: int) -> Dict[str, Any]:
        """``{"metrics": {"bbox_ema/AP": ...}}`` if the latest evaluation saw the weights of
        ``iteration``, else ``{}`` (stored with checkpoints)."""
        if self.iteration < iteration or not self.results:
            return {}
        return {"metrics": {f"{task}/{k}": float(v) for task, m in self.results.items() for k, v in m.items()}}


# ----------------------------------------------------------------------------- builders
def build_trainer(cfg: DictConfig, model: torch.nn.Module, train_loader, optimizer,
                  device: torch.device) -> Trainer:
    """The training loop per ``train.amp`` / ``train.clip_grad``, seeded per iteration."""
    amp, clip = cfg.train.amp, cfg.train.clip_grad
    return Trainer(
        model, train_loader, optimizer,
        amp=amp.enabled, amp_dtype=amp.get("dtype", "float16"), device_type=device.type,
        clip_grad=dict(max_norm=clip.max_norm, norm_type=clip.get("norm_type", 2.0)) if clip.enabled else None,
        seed=int(cfg.train.seed),
    )


def _best_metric(cfg: DictConfig) -> Optional[str]:
    metric = cfg.train.checkpointer.get("best_metric", "auto")
    if metric == "auto":
        return "bbox_ema/AP" if cfg.train.model_ema.enabled else "bbox/AP"
    return metric or None


def _ema_restart_hook(cfg: DictConfig, ema: Optional[ModelEMA], length: TrainingLength) -> Optional[HookBase]:
    """DEIM's EMA restart per ``train.model_ema.restart_epoch`` / ``restart_decay`` (None: off)."""
    epoch = cfg.train.model_ema.get("restart_epoch")
    if epoch is None or ema is None:
        return None
    if not length.iters_per_epoch:
        raise ConfigError("train.model_ema.restart_epoch needs a train loader with iters_per_epoch.")
    if not _best_metric(cfg):
        raise ConfigError("train.model_ema.restart_epoch restarts from model_best.pth: set "
                          "train.checkpointer.best_metric (e.g. 'auto').")
    return EMARestartHook(ema, os.path.join(cfg.train.output_dir, "model_best.pth"),
                          int(epoch) * length.iters_per_epoch, float(cfg.train.model_ema.get("restart_decay", 0.9999)))


def build_hooks(cfg: DictConfig, trainer: Trainer, checkpointer: Checkpointer, ema: Optional[ModelEMA],
                lr_multiplier, evaluation: Evaluation, length: TrainingLength) -> List[HookBase]:
    """The trainer's hooks, in the order they run after each step."""
    ck = cfg.train.checkpointer
    hooks: List[Optional[HookBase]] = [
        d2_hooks.IterationTimer(),
        # Right after the optimizer step: everything below sees (and saves) the updated average.
        EMAHook(ema, trainer.model) if ema is not None else None,
        _ema_restart_hook(cfg, ema, length),
        d2_hooks.LRScheduler(scheduler=lr_multiplier),
        # Before the checkpointers: they store the metrics of an evaluation of the same iteration.
        d2_hooks.EvalHook(length.eval_period, lambda: evaluation.run(trainer.iter), eval_after_train=True),
        # After evaluation, before the checkpointers: a stop for unreadable images saves its own.
        BadImageHook(trainer.data_loader, checkpointer) if hasattr(trainer.data_loader, "take_bad_images") else None,
    ]
    best = _best_metric(cfg)
    if best:
        hooks.append(BestCheckpointer(checkpointer, best, ck.get("best_mode", "max"),
                                      lambda: evaluation.metrics_at(trainer.iter)))
    hooks.append(PeriodicCheckpointer(checkpointer, length.checkpoint_period, ck.get("max_to_keep"),
                                      lambda: evaluation.metrics_at(trainer.iter)))
    if comm.is_main_process():
        writers = default_writers(cfg.train.output_dir, length.max_iter)
        hooks.append(d2_hooks.PeriodicWriter(writers, period=int(cfg.train.log_period)))
    # Last, so a preemption checkpoint holds the state after scheduler, EMA and writers ran.
    hooks.append(PreemptionHook(checkpointer))
    return [h for h in hooks if h is not None]


def resume_or_load(cfg: DictConfig, checkpointer: Checkpointer, trainer: Trainer, ema: Optional[ModelEMA],
                   resume: bool) -> int:
    """Resume from the output directory's last checkpoint (model, EMA, optimizer, trainer and
    hook state) with ``resume``, else load ``train.init_checkpoint`` if set: a checkpoint trained
    on other classes is fine-tuned to the training data's classes (``checkpointer.class_names``)
    unless ``train.init_strict``. Returns the first iteration to run."""
    if resume and checkpointer.has_checkpoint():
        path = checkpointer.get_checkpoint_file()
        logger.info(f"Resuming from {path}")
        checkpointer.load(path)
        return trainer.iter + 1
    if cfg.train.init_checkpoint:
        class_map = OmegaConf.select(cfg, "train.init_class_map", default=None)
        load_init_checkpoint(
            checkpointer.model, cfg.train.init_checkpoint, ema, class_names=checkpointer.class_names,
            class_map=OmegaConf.to_container(class_map) if OmegaConf.is_config(class_map) else class_map,
            strict=bool(OmegaConf.select(cfg, "train.init_strict", default=False)))
    return 0


# ----------------------------------------------------------------------------- train / eval
def do_train(cfg: DictConfig, resume: bool = False) -> Dict[str, Any]:
    """Train per ``cfg`` (this process's share); returns the last evaluation results."""
    output_dir = cfg.train.output_dir
    if not output_dir:
        raise ConfigError("train.output_dir must be set.")
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    device = device_for_process(cfg.train.device)
    logger.info(f"Training on {device} with {comm.get_world_size()} process(es)")

    # Before building anything: register, load and check the datasets (the loaders take them over).
    classes = prepare_data(cfg, check_files=comm.get_local_rank() == 0)
    model = build_model(cfg, device, checkpoint="")
    if "seed" in cfg.dataloader.train and cfg.dataloader.train.seed is None:
        cfg.dataloader.train.seed = int(cfg.train.seed)  # one seed for init, data order and augmentation
    train_loader = instantiate(cfg.dataloader.train)
    check_num_classes(cfg, model, classes)
    ipe = getattr(train_loader, "iters_per_epoch", None)
    length = resolve_training_length(cfg, ipe)
    if ipe:
        tbs = OmegaConf.select(cfg, "dataloader.train.total_batch_size", default=None)
        n = getattr(train_loader, "num_samples", None)
        logger.info(f"1 epoch = {ipe} iterations ({n} images / total batch size {tbs})")
    logger.info(length.describe())

    optimizer = build_optimizer(cfg, model)
    lr_multiplier = build_lr_multiplier(cfg, length)
    save_config(cfg, output_dir)

    ddp_model = create_ddp_model(model, **cfg.train.get("ddp", {}))
    ema = build_ema(cfg, model)
    trainer = build_trainer(cfg, ddp_model, train_loader, optimizer, device)
    checkpointables = {"trainer": trainer}
    if ema is not None:
        checkpointables["ema"] = ema
    checkpointer = Checkpointer(model, output_dir, class_names=classes.get("dataloader.train.dataset"),
                                **checkpointables)
    test_loader = instantiate(cfg.dataloader.test) if "test" in cfg.dataloader else None
    evaluation = Evaluation(cfg, model, ema, test_loader, output_dir)
    trainer.register_hooks(build_hooks(cfg, trainer, checkpointer, ema, lr_multiplier, evaluation, length))

    start_iter = resume_or_load(cfg, checkpointer, trainer, ema, resume)
    if hasattr(train_loader, "set_start_iter"):
        train_loader.set_start_iter(start_iter)
    elif start_iter > 0:
        logger.warning("The train loader cannot start at a given iteration: the resumed data order differs.")
    if start_iter >= length.max_iter:
        logger.info(f"Checkpoint is at iteration {start_iter} >= max_iter {length.max_iter}: evaluating only.")
        return evaluation.run(trainer.iter)
    trainer.train(start_iter, length.max_iter)
    return evaluation.results


def do_eval_only(cfg: DictConfig) -> Dict[str, Any]:
    """--eval-only: load train.init_checkpoint (EMA too when present) and evaluate."""
    device = device_for_process(cfg.train.device)
    classes = prepare_data(cfg, splits=("test",), check_files=comm.get_local_rank() == 0)
    model = build_model(cfg, device, checkpoint="")
    check_num_classes(cfg, model, classes)
    ema = build_ema(cfg, model)
    report: Dict[str, Any] = {}
    if cfg.train.init_checkpoint:
        report = load_init_checkpoint(model, cfg.train.init_checkpoint, ema)
    else:
        logger.warning("--eval-only without train.init_checkpoint: evaluating the freshly initialized model.")
    results = do_test(cfg, model, ema)
    if comm.is_main_process() and results and cfg.train.output_dir:
        os.makedirs(cfg.train.output_dir, exist_ok=True)
        with open(os.path.join(cfg.train.output_dir, "eval_only_results.json"), "w") as f:
            json.dump({"checkpoint": cfg.train.init_checkpoint, "results": results,
                       "checkpoint_metrics": report.get("metrics", {})}, f, indent=1)
    return results


def main(args) -> Dict[str, Any]:
    """One process of ``tools/train_net.py``: load the config, set the process up, train or
    evaluate. Returns the evaluation results."""
    cfg = load_config(args.config_file, args.opts, require=TRAINING_SECTIONS)
    setup_process(cfg, args)
    if args.eval_only:
        return do_eval_only(cfg)
    return do_train(cfg, resume=args.resume)
