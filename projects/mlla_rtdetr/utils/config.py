"""Loading configs and models for the tools (analysis, benchmark, demo, ONNX export)."""
from __future__ import annotations

import logging
import os
import types
from typing import Optional, Sequence

import torch
from detectron2.config import LazyConfig, instantiate

logger = logging.getLogger(__name__)


def load_config(config_file: str, overrides: Sequence[str] = ()):
    """Load a LazyConfig python file and apply detectron2-style ``key=value`` overrides.

    ``config_file`` is a path, or a name relative to ``configs/`` or ``projects/mlla_rtdetr/configs/``
    (see :func:`mlla_rtdetr.config.config_path`).
    """
    path = config_file
    if not os.path.isfile(path):
        from mlla_rtdetr.config import config_path

        try:
            path = str(config_path(config_file))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--config-file '{config_file}' does not exist. {e}") from None
    cfg = LazyConfig.load(path)
    overrides = list(overrides or [])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"Overrides must look like key=value, got {bad}")
    if overrides:
        try:  # the engine's loader rejects misspelled keys instead of silently adding them
            from mlla_rtdetr.engine.overrides import apply_overrides
        except ImportError:
            apply_overrides = LazyConfig.apply_overrides
        cfg = apply_overrides(cfg, overrides)
    return cfg


def build_model(cfg, checkpoint: Optional[str] = None, device: str = "cpu", use_ema: bool = True) -> torch.nn.Module:
    """Instantiate ``cfg.model`` on ``device`` and load ``checkpoint`` (or ``cfg.train.init_checkpoint``
    when ``checkpoint`` is ``None``; an empty string means: keep the random initialization)."""
    if "model" not in cfg:
        raise KeyError("The config defines no `model`; pass a recipe or a model config.")
    seed = int(cfg.train.get("seed", 0)) if "train" in cfg else 0
    torch.manual_seed(max(seed, 0))
    model = instantiate(cfg.model)
    if checkpoint is None:
        checkpoint = cfg.train.get("init_checkpoint", "") if "train" in cfg else ""
    if checkpoint:
        load_weights(model, checkpoint, use_ema=use_ema)
    model.to(torch.device(device))
    return model


def load_weights(model: torch.nn.Module, checkpoint: str, use_ema: bool = True) -> None:
    """Load a checkpoint into ``model`` with the engine's loader (checkpoints of this code base,
    official RT-DETR / MLLA ones, plain state dicts). With ``use_ema`` the EMA weights of a
    training checkpoint are used when it holds them (they are the ones evaluated)."""
    from mlla_rtdetr.engine import load_init_checkpoint
    from mlla_rtdetr.engine.checkpoint import is_url

    if not is_url(checkpoint) and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"Checkpoint '{checkpoint}' does not exist.")

    # The engine loads the model weights into `model`, then the EMA weights into `ema.module`,
    # which is the same model here: the EMA weights win when present, else nothing changes.
    ema = types.SimpleNamespace(module=model, updates=0) if use_ema else None
    report = load_init_checkpoint(model, checkpoint, ema=ema)
    logger.info("Loaded %s (%s, EMA: %s)", checkpoint, report.get("format"), report.get("ema", "not used"))
