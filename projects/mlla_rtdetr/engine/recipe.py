"""Loading a recipe (a LazyConfig file and validated ``key=value`` overrides) and saving the
resolved one next to the run."""
from __future__ import annotations

import logging
import os
from typing import Sequence

from omegaconf import DictConfig

from detectron2.config import LazyConfig
from detectron2.utils import comm

from ..config import get_config
from ..errors import ConfigError
from .overrides import apply_overrides

__all__ = ["TRAINING_SECTIONS", "load_config", "save_config"]

logger = logging.getLogger("mlla_rtdetr.engine")

TRAINING_SECTIONS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")
"""The top-level entries of a recipe that can be trained."""


def load_config(config_file: str, overrides: Sequence[str] = (), require: Sequence[str] = ()) -> DictConfig:
    """Load a LazyConfig file and apply validated ``key=value`` overrides.

    Args:
        config_file: a path, or a name relative to ``configs/`` or ``projects/mlla_rtdetr/configs/``
            (:func:`mlla_rtdetr.config.config_path`); a missing file is a :class:`ConfigError`
            naming the closest known configs.
        overrides: detectron2/Hydra ``key=value`` strings; an unknown key is a :class:`ConfigError`
            naming the closest valid keys (``+key=value`` adds a key on purpose). A ``--`` (the
            end of a tool's options) is skipped.
        require: top-level entries the config must define (e.g. :data:`TRAINING_SECTIONS`).
    """
    cfg = get_config(config_file)
    cfg = apply_overrides(cfg, [o for o in overrides if o != "--"])
    missing = [s for s in require if s not in cfg]
    if missing:
        raise ConfigError(
            f"Config '{config_file}' lacks {missing}; a recipe defines model, dataloader "
            "(train, test, evaluator), optimizer, lr_multiplier and train "
            "(see configs/common/train.py)."
        )
    return cfg


def save_config(cfg: DictConfig, output_dir: str) -> None:
    """Write the resolved config to ``output_dir/config.yaml`` (main process)."""
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        LazyConfig.save(cfg, path)
        logger.info(f"Resolved config saved to {path}")
