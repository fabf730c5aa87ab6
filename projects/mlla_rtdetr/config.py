"""Locating and loading the repository's LazyConfig files, and the config resolvers.

Recipes import shared pieces the detrex way::

    from mlla_rtdetr.config import get_config
    train = get_config("common/train.py").train

Resolvers (registered when ``mlla_rtdetr`` is imported) let a config take values from the model
it describes instead of repeating them::

    encoder=L(HybridEncoder)(
        in_channels="${backbone_channels:${..backbone}}",   # [512, 1024, 2048] for ResNet-50
        feat_strides="${backbone_strides:${..backbone}}",   # [8, 16, 32]
        ...)

They read :meth:`Backbone.output_shape` of the backbone the given LazyCall node builds (outputs
ordered by stride, the order the meta-architecture feeds them to the encoder), so swapping the
backbone of a recipe needs no other edit. The node is built once per distinct config (on the
``meta`` device when its constructor allows it), with the global torch RNG saved and restored:
resolving never changes the random initialisation of the model built afterwards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMON_CONFIG_DIR = REPO_ROOT / "configs"
PROJECT_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_path(relative: str) -> Path:
    """Absolute path of a config given relative to ``configs/`` (e.g. ``"common/train.py"``)
    or to ``projects/mlla_rtdetr/configs/`` (e.g. ``"rtdetr_r18vd_6x_coco.py"``)."""
    for root in (COMMON_CONFIG_DIR, PROJECT_CONFIG_DIR):
        path = root / relative
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Config '{relative}' not found under {COMMON_CONFIG_DIR} or {PROJECT_CONFIG_DIR}. "
        "The configs live in the source checkout: install the project with `pip install -e .`."
    )


def get_config(relative: str):
    """Load a LazyConfig file by its path relative to ``configs/`` or the project's configs."""
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(config_path(relative)))


_SHAPE_CACHE: Dict[str, List[Tuple[int, int]]] = {}


def backbone_output_levels(backbone_cfg) -> List[Tuple[int, int]]:
    """``[(channels, stride), ...]`` of the outputs of the backbone a LazyCall config builds,
    sorted by stride. The backbone is instantiated on the ``meta`` device (on the CPU when its
    constructor needs real values) with the torch RNG state restored afterwards; results are
    cached per config content."""
    if isinstance(backbone_cfg, DictConfig):
        key = repr(OmegaConf.to_container(backbone_cfg, resolve=True))
    else:
        key = repr(backbone_cfg)
    if key not in _SHAPE_CACHE:
        from detectron2.config import instantiate

        with torch.random.fork_rng(devices=[]):
            try:  # no memory, no weight init; constructors that compute on values need real tensors
                with torch.device("meta"):
                    backbone = instantiate(backbone_cfg)
            except Exception:
                with torch.device("cpu"):
                    backbone = instantiate(backbone_cfg)
        if not hasattr(backbone, "output_shape"):
            from .errors import ConfigError

            raise ConfigError(
                f"{type(backbone).__name__} has no output_shape(): the encoder cannot take its in_channels / "
                "feat_strides from it. Use a detectron2 Backbone or set model.encoder.in_channels and "
                "model.encoder.feat_strides explicitly."
            )
        shapes = backbone.output_shape()
        levels = sorted(((int(s.channels), int(s.stride)) for s in shapes.values()), key=lambda cs: cs[1])
        _SHAPE_CACHE[key] = levels
    return list(_SHAPE_CACHE[key])


def register_resolvers() -> None:
    """Register ``backbone_channels`` and ``backbone_strides`` with OmegaConf (idempotent)."""
    OmegaConf.register_new_resolver(
        "backbone_channels", lambda node: [c for c, _ in backbone_output_levels(node)], replace=True
    )
    OmegaConf.register_new_resolver(
        "backbone_strides", lambda node: [s for _, s in backbone_output_levels(node)], replace=True
    )
