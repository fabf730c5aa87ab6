"""Building a run's objects from its config: the model (and its weights), optimizer, lr schedule,
EMA and evaluator. ``tools/train_net.py`` and every other tool build models with :func:`build_model`."""
from __future__ import annotations

import inspect
import logging
import types
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import instantiate
from detectron2.utils.env import seed_all_rng
from detectron2.utils.registry import locate

from ..errors import ConfigError
from .init_checkpoint import load_init_checkpoint
from .ema import ModelEMA, unwrap_model
from .optim import describe_param_groups
from .training_length import TrainingLength

__all__ = ["build_model", "load_weights", "build_optimizer", "build_lr_multiplier", "build_ema", "build_evaluator"]

logger = logging.getLogger("mlla_rtdetr.engine")


def build_model(cfg: DictConfig, device="cpu", checkpoint: Optional[str] = None,
                use_ema: bool = True, deploy: bool = False) -> torch.nn.Module:
    """Instantiate ``cfg.model`` on ``device``.

    Every RNG is seeded with ``train.seed`` right before construction (detectron2's
    ``seed_all_rng``; 0 for a config without ``train``, a random seed for a negative one), so
    every rank and every tool builds the same initial weights whatever ran before.

    Args:
        checkpoint: weights to load (:func:`load_weights`); None: ``train.init_checkpoint``;
            "": none (training loads ``train.init_checkpoint`` itself, into the EMA as well).
        use_ema: load the EMA weights of a training checkpoint when it holds them.
        deploy: return the model's inference form (``model.deploy()``: eval mode, folded RepVGG /
            BatchNorms, channels-last), the fast path of every inference tool.
    """
    if "model" not in cfg:
        raise ConfigError("The config defines no `model`; pass a recipe or a model config.")
    seed = int(OmegaConf.select(cfg, "train.seed", default=0))
    seed_all_rng(seed if seed >= 0 else None)
    model = instantiate(cfg.model)
    if checkpoint is None:
        checkpoint = OmegaConf.select(cfg, "train.init_checkpoint", default="") or ""
    if checkpoint:
        load_weights(model, checkpoint, use_ema=use_ema)
    model.to(torch.device(device))
    n = sum(p.numel() for p in model.parameters())
    logger.info(f"Model {type(model).__name__}: {n / 1e6:.2f} M parameters")
    if deploy:
        model.eval()
        if hasattr(model, "deploy"):
            model.deploy()
    return model


def load_weights(model: torch.nn.Module, checkpoint: str, use_ema: bool = True) -> None:
    """Load a checkpoint into ``model`` with :func:`load_init_checkpoint` (checkpoints of this code
    base, official RT-DETR / MLLA ones, plain state dicts). With ``use_ema`` the EMA weights of a
    training checkpoint are used when it holds them (they are the ones evaluated)."""
    # load_init_checkpoint loads the model weights into `model`, then the EMA weights into
    # `ema.module`, which is the same model here: the EMA weights win when present.
    ema = types.SimpleNamespace(module=model, updates=0) if use_ema else None
    report = load_init_checkpoint(model, checkpoint, ema=ema)
    logger.info("Loaded %s (%s, EMA: %s)", checkpoint, report.get("format"), report.get("ema", "not used"))


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


def build_ema(cfg: DictConfig, model: torch.nn.Module) -> Optional[ModelEMA]:
    """The EMA of ``model`` per ``train.model_ema`` (None when disabled)."""
    ema_cfg = cfg.train.model_ema
    if not ema_cfg.enabled:
        return None
    return ModelEMA(model, decay=ema_cfg.decay, warmups=ema_cfg.warmups)


def build_evaluator(cfg: DictConfig):
    """``cfg.dataloader.evaluator``: the dataset configs build a
    :class:`mlla_rtdetr.data.FastCOCOEvaluator` (:func:`mlla_rtdetr.data.build_coco_evaluator`)."""
    return instantiate(cfg.dataloader.evaluator)
