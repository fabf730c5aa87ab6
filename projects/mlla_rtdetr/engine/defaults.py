"""Building blocks of ``tools/train_net.py``: config setup, training length, model/optimizer/
schedule construction, class-count checks, training and evaluation.

``tools/train_net.py`` only parses arguments and calls :func:`launch_from_args` with
:func:`main`; everything here is importable (``mlla_rtdetr.engine``) so other tools (sweeps,
Slurm submission) can reuse it.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import hooks as d2_hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from detectron2.utils.logger import setup_logger

from ..errors import ConfigError
from .checkpoint import BestCheckpointer, Checkpointer, PeriodicCheckpointer, load_init_checkpoint
from .ema import EMAHook, ModelEMA, unwrap_model
from .evaluation import FastCOCOEvaluator, evaluate_model, faster_cocoeval, has_faster_coco_eval
from mlla_rtdetr.launch.distributed import launch  # joins torchrun groups, else spawns
from mlla_rtdetr.launch.preemption import PreemptionHook

from .launch import create_ddp_model, dist_backend_for, resolve_device
from .optim import describe_param_groups
from .overrides import apply_overrides
from .trainer import Trainer

__all__ = [
    "ConfigError",
    "TrainingLength",
    "load_config",
    "setup_process",
    "resolve_training_length",
    "check_num_classes",
    "build_model",
    "build_optimizer",
    "build_lr_multiplier",
    "build_evaluator",
    "do_test",
    "do_train",
    "main",
    "launch_from_args",
]

logger = logging.getLogger("mlla_rtdetr.engine")


# ----------------------------------------------------------------------------- config
REQUIRED_SECTIONS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")


def load_config(config_file: str, overrides=()) -> DictConfig:
    """LazyConfig.load + validated overrides + structural checks."""
    cfg = LazyConfig.load(config_file)
    cfg = apply_overrides(cfg, list(overrides or []))
    missing = [s for s in REQUIRED_SECTIONS if s not in cfg]
    if missing:
        raise ConfigError(
            f"Config '{config_file}' lacks {missing}; a recipe defines model, dataloader "
            "(train, test, evaluator), optimizer, lr_multiplier and train "
            "(see configs/common/train.py)."
        )
    return cfg


def setup_process(cfg: DictConfig, args=None) -> str:
    """Per-process setup: output dir, loggers, environment info, seed, cudnn. Returns output_dir."""
    output_dir = cfg.train.output_dir
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    for name, abbrev in (("detectron2", "d2"), ("fvcore", "fvcore"), ("mlla_rtdetr", "mlla_rtdetr")):
        setup_logger(output_dir, distributed_rank=rank, name=name, abbrev_name=abbrev)
    logger.info(f"Rank of current process: {rank}. World size: {comm.get_world_size()}")
    if comm.is_main_process():
        logger.info("Environment info:\n" + collect_env_info())
    if args is not None:
        logger.info(f"Command line arguments: {args}")
    seed = int(cfg.train.seed)
    if seed < 0:
        seed = comm.shared_random_seed() % (2**31)
        cfg.train.seed = seed
        logger.info(f"train.seed < 0: drew seed {seed} (shared by all ranks)")
    seed_all_rng(seed + rank)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = bool(cfg.train.get("cudnn_benchmark", False))
    return output_dir


def save_config(cfg: DictConfig, output_dir: str) -> None:
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        LazyConfig.save(cfg, path)
        logger.info(f"Resolved config saved to {path}")


# ----------------------------------------------------------------------------- length / periods
@dataclass
class TrainingLength:
    max_iter: int
    iters_per_epoch: Optional[int]
    eval_period: int
    checkpoint_period: int

    def describe(self) -> str:
        ipe = self.iters_per_epoch
        ep = f" = {self.max_iter / ipe:.2f} epochs of {ipe} iterations" if ipe else ""
        return (
            f"training length: {self.max_iter} iterations{ep}; eval every {self.eval_period or 'never'} "
            f"iterations (and at the end); checkpoint every {self.checkpoint_period or 'never'} iterations"
        )


def _iters(value_iter, value_epochs, ipe: Optional[int], what: str) -> int:
    if value_iter is not None:
        return int(value_iter)
    if value_epochs is None:
        return 0
    if not ipe:
        raise ConfigError(
            f"{what} is given in epochs but the train loader does not expose iters_per_epoch; "
            f"give {what} in iterations instead."
        )
    return int(round(float(value_epochs) * ipe))


def resolve_training_length(cfg: DictConfig, iters_per_epoch: Optional[int]) -> TrainingLength:
    """Turn epochs into iterations (iteration fields win when set) and write them back into
    ``cfg.train`` (max_iter, eval_period, checkpointer.period) so config.yaml is resolved."""
    t = cfg.train
    max_iter = _iters(t.get("max_iter"), t.get("epochs"), iters_per_epoch, "train.epochs")
    if max_iter <= 0:
        raise ConfigError("Set train.max_iter (iterations) or train.epochs to a positive value.")
    eval_period = _iters(t.get("eval_period"), t.get("eval_epochs"), iters_per_epoch, "train.eval_epochs")
    ck = t.checkpointer
    ckpt_period = _iters(ck.get("period"), ck.get("period_epochs"), iters_per_epoch, "train.checkpointer.period_epochs")
    t.max_iter, t.eval_period, ck.period = max_iter, eval_period, ckpt_period
    return TrainingLength(max_iter, iters_per_epoch, eval_period, ckpt_period)


# ----------------------------------------------------------------------------- builders
def _dataset_names(cfg: DictConfig, split: str):
    """Dataset names of a split; a COCO-format set given by ``json_file`` / ``image_root`` is
    registered first (as building its loader would), so its metadata can be checked now."""
    try:
        dataset = cfg.dataloader[split].dataset
        names = dataset.names
    except Exception:
        return []
    if names is None:
        return []
    json_file, image_root = dataset.get("json_file", None), dataset.get("image_root", None)
    if isinstance(names, str) and json_file and image_root:
        from mlla_rtdetr.data.datasets.coco import register_coco_format

        register_coco_format(names, json_file, image_root)
    return [names] if isinstance(names, str) else list(names)


def check_num_classes(cfg: DictConfig, model: Optional[torch.nn.Module] = None) -> None:
    """Model, criterion and dataset metadata must agree on the number of classes.

    Checked on the config before building anything (fast, readable) and on the built model.
    Raises :class:`ConfigError` that lists each source with its value.
    """
    from detectron2.data import MetadataCatalog

    counts: "OrderedDict[str, int]" = OrderedDict()
    if model is not None:
        m = unwrap_model(model)
        if hasattr(m, "num_classes"):
            counts["model.num_classes"] = int(m.num_classes)
        for sub in ("criterion", "decoder"):
            if hasattr(getattr(m, sub, None), "num_classes"):
                counts[f"model.{sub}.num_classes"] = int(getattr(m, sub).num_classes)
    else:
        for key in ("model.num_classes", "model.criterion.num_classes", "model.decoder.num_classes"):
            value = OmegaConf.select(cfg, key, default=None)
            if isinstance(value, int):
                counts[key] = value
    for split in ("train", "test"):
        for name in _dataset_names(cfg, split):
            meta = MetadataCatalog.get(name)
            if not hasattr(meta, "thing_classes"):
                from mlla_rtdetr.data import dataset_num_classes

                counts[f"dataset '{name}' thing_classes ({split})"] = dataset_num_classes(name)
            else:
                counts[f"dataset '{name}' thing_classes ({split})"] = len(meta.thing_classes)
    if len(set(counts.values())) > 1:
        detail = "\n  ".join(f"{k} = {v}" for k, v in counts.items())
        raise ConfigError(
            "The number of classes of the model, its criterion and the dataset metadata disagree:\n  "
            f"{detail}\nSet model.num_classes (and model.criterion.num_classes / "
            "model.decoder.num_classes) to the dataset's number of classes."
        )


def build_model(cfg: DictConfig, device: torch.device) -> torch.nn.Module:
    # Same seed on every rank, right before construction: identical init whatever ran before.
    seed_all_rng(int(cfg.train.seed))
    model = instantiate(cfg.model)
    model.to(device)
    n = sum(p.numel() for p in model.parameters())
    logger.info(f"Model {type(model).__name__}: {n / 1e6:.2f} M parameters")
    return model


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if "params" in cfg.optimizer and OmegaConf.is_config(cfg.optimizer.params) and "model" in cfg.optimizer.params:
        cfg.optimizer.params.model = unwrap_model(model)
    optimizer = instantiate(cfg.optimizer)
    if "params" in cfg.optimizer and OmegaConf.is_config(cfg.optimizer.params):
        cfg.optimizer.params.model = None  # keep the config serializable
    logger.info(f"Optimizer {type(optimizer).__name__}\n" + describe_param_groups(optimizer))
    return optimizer


def build_lr_multiplier(cfg: DictConfig, length: TrainingLength):
    """Instantiate ``cfg.lr_multiplier`` with ``max_iter`` / ``iters_per_epoch`` filled in when
    its target accepts them (fvcore ParamSchedulers that do not are used as they are)."""
    lm = cfg.lr_multiplier
    target = lm.get("_target_") if OmegaConf.is_config(lm) else None
    if target is not None:
        from detectron2.utils.registry import locate

        fn = locate(target) if isinstance(target, str) else target
        params = inspect.signature(fn).parameters
        if "max_iter" in params:
            lm.max_iter = length.max_iter
        if "iters_per_epoch" in params:
            lm.iters_per_epoch = length.iters_per_epoch
    sched = instantiate(lm)
    if hasattr(sched, "describe"):
        logger.info(f"lr schedule: {sched.describe()}")
    return sched


def _as_fast_coco(evaluator):
    """Give a plain detectron2 COCOEvaluator the faster-coco-eval backend (same state)."""
    if type(evaluator) is COCOEvaluator and has_faster_coco_eval():
        evaluator.__class__ = FastCOCOEvaluator
        evaluator.backend = "faster_coco_eval"
        evaluator._cocoeval_fn = faster_cocoeval
    return evaluator


def build_evaluator(cfg: DictConfig):
    return _as_fast_coco(instantiate(cfg.dataloader.evaluator))


# ----------------------------------------------------------------------------- eval
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


def _flatten(results: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    return {f"{task}/{k}": float(v) for task, metrics in results.items() for k, v in metrics.items()}


# ----------------------------------------------------------------------------- train
def _device_for_process(cfg: DictConfig) -> torch.device:
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", comm.get_local_rank() if comm.get_world_size() > 1 else 0)
    return device


def _best_metric(cfg: DictConfig) -> Optional[str]:
    metric = cfg.train.checkpointer.get("best_metric", "auto")
    if metric == "auto":
        return "bbox_ema/AP" if cfg.train.model_ema.enabled else "bbox/AP"
    return metric or None


def do_train(cfg: DictConfig, resume: bool = False) -> Dict[str, Any]:
    """Train per ``cfg`` (this process's share); returns the last evaluation results."""
    output_dir = cfg.train.output_dir
    if not output_dir:
        raise ConfigError("train.output_dir must be set.")
    if comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
    device = _device_for_process(cfg)
    logger.info(f"Training on {device} with {comm.get_world_size()} process(es)")

    check_num_classes(cfg)  # before building anything: fast, readable
    model = build_model(cfg, device)
    if "seed" in cfg.dataloader.train and cfg.dataloader.train.seed is None:
        cfg.dataloader.train.seed = int(cfg.train.seed)  # one seed for init, order and augmentation
    train_loader = instantiate(cfg.dataloader.train)
    check_num_classes(cfg, model)
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
    ema = None
    if cfg.train.model_ema.enabled:
        ema = ModelEMA(model, decay=cfg.train.model_ema.decay, warmups=cfg.train.model_ema.warmups)
    amp = cfg.train.amp
    trainer = Trainer(
        ddp_model, train_loader, optimizer,
        amp=amp.enabled, amp_dtype=amp.get("dtype", "float16"), device_type=device.type,
        clip_grad=(
            dict(max_norm=cfg.train.clip_grad.max_norm, norm_type=cfg.train.clip_grad.get("norm_type", 2.0))
            if cfg.train.clip_grad.enabled else None
        ),
        seed=int(cfg.train.seed),
    )
    checkpointables = {"trainer": trainer}
    if ema is not None:
        checkpointables["ema"] = ema
    checkpointer = Checkpointer(model, output_dir, **checkpointables)

    test_loader = instantiate(cfg.dataloader.test) if "test" in cfg.dataloader else None
    latest: Dict[str, Any] = {"results": {}, "metrics": {}, "metrics_iter": -1}

    def eval_fn():
        results = do_test(cfg, model, ema, test_loader)
        latest["results"] = results
        latest["metrics"] = _flatten(results) if results else {}
        latest["metrics_iter"] = trainer.iter
        if comm.is_main_process() and results:
            with open(os.path.join(output_dir, "eval_results.json"), "w") as f:
                json.dump({"iteration": trainer.iter, "results": results}, f, indent=1)
        return results

    def extra():
        if latest["metrics_iter"] >= trainer.iter and latest["metrics"]:  # evaluated on these weights
            return {"metrics": dict(latest["metrics"])}
        return {}

    hook_list = [
        d2_hooks.IterationTimer(),
        EMAHook(ema, ddp_model) if ema is not None else None,
        d2_hooks.LRScheduler(scheduler=lr_multiplier),
        d2_hooks.EvalHook(length.eval_period, eval_fn, eval_after_train=True),
    ]
    best = _best_metric(cfg)
    if best:
        hook_list.append(BestCheckpointer(checkpointer, best, cfg.train.checkpointer.get("best_mode", "max"), extra))
    hook_list.append(
        PeriodicCheckpointer(checkpointer, length.checkpoint_period, cfg.train.checkpointer.get("max_to_keep"), extra)
    )
    if comm.is_main_process():
        writers = [
            CommonMetricPrinter(length.max_iter),
            JSONWriter(os.path.join(output_dir, "metrics.json")),
            TensorboardXWriter(output_dir),
        ]
        hook_list.append(d2_hooks.PeriodicWriter(writers, period=int(cfg.train.log_period)))
    # Last, so a preemption checkpoint holds the state after scheduler, EMA and writers ran.
    hook_list.append(PreemptionHook(checkpointer))
    trainer.register_hooks([h for h in hook_list if h is not None])

    start_iter = 0
    if resume and checkpointer.has_checkpoint():
        path = checkpointer.get_checkpoint_file()
        logger.info(f"Resuming from {path}")
        checkpointer.load(path)
        start_iter = trainer.iter + 1
    elif cfg.train.init_checkpoint:
        load_init_checkpoint(model, cfg.train.init_checkpoint, ema)
    if hasattr(train_loader, "set_start_iter"):
        train_loader.set_start_iter(start_iter)
    elif start_iter > 0:
        logger.warning("The train loader cannot start at a given iteration: the resumed data order differs.")

    if start_iter >= length.max_iter:
        logger.info(f"Checkpoint is at iteration {start_iter} >= max_iter {length.max_iter}: evaluating only.")
        return eval_fn()
    trainer.train(start_iter, length.max_iter)
    return latest["results"]


def do_eval_only(cfg: DictConfig) -> Dict[str, Any]:
    """--eval-only: load train.init_checkpoint (EMA too when present) and evaluate."""
    device = _device_for_process(cfg)
    check_num_classes(cfg)
    model = build_model(cfg, device)
    check_num_classes(cfg, model)
    ema = None
    if cfg.train.model_ema.enabled:
        ema = ModelEMA(model, decay=cfg.train.model_ema.decay, warmups=cfg.train.model_ema.warmups)
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
    """Entry point of one process (called by :func:`launch`)."""
    cfg = load_config(args.config_file, args.opts)
    setup_process(cfg, args)
    if args.eval_only:
        return do_eval_only(cfg)
    return do_train(cfg, resume=args.resume)


def launch_from_args(main_func, args) -> None:
    """Validate the config in the launching process (errors surface once, before spawning),
    pick the distributed backend from the training device, and launch ``main_func(args)``."""
    cfg = load_config(args.config_file, args.opts)
    device = resolve_device(cfg.train.device)
    backend = dist_backend_for(device, getattr(args, "dist_backend", "auto"))
    launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        backend=backend,
    )
