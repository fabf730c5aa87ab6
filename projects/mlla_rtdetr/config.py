"""Finding the repository's LazyConfig files by name.

A config is given as a path (absolute, or relative to the current directory or the repository
root) or by its name relative to ``configs/`` (``"common/train.py"``) or
``projects/mlla_rtdetr/configs/`` (``"rtdetr_r18vd_6x_coco.py"``, ``"models/rtdetr_r18vd.py"``);
the ``.py`` may be left out. Recipes import shared pieces the detrex way::

    from mlla_rtdetr.config import get_config
    train = get_config("common/train.py").train

Command-line tools load a config with validated ``key=value`` overrides through
:func:`mlla_rtdetr.engine.load_config`, which resolves names with :func:`config_path`.

Resolvers (registered when ``mlla_rtdetr`` is imported) let a config take values from the model
it describes instead of repeating them::

    encoder=L(HybridEncoder)(
        in_channels="${backbone_channels:${..backbone}}",   # [512, 1024, 2048] for ResNet-50
        feat_strides="${backbone_strides:${..backbone}}",   # [8, 16, 32]
        ...)

They read :meth:`Backbone.output_shape` of the backbone the given LazyCall node builds (outputs
ordered by stride, the order the meta-architecture feeds them to the encoder), so swapping the
backbone of a recipe needs no other edit. The node is built once per distinct config (on the
``meta`` device, :func:`instantiate_on_meta`), with the global torch RNG saved and restored:
resolving never changes the random initialisation of the model built afterwards.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Dict, List, Tuple

from .errors import ConfigError, PathNotFoundError

__all__ = ["ConfigNotFoundError", "config_path", "get_config", "known_configs", "backbone_output_levels",
           "instantiate_on_meta", "register_resolvers"]

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMON_CONFIG_DIR = REPO_ROOT / "configs"
PROJECT_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_DIRS = (COMMON_CONFIG_DIR, PROJECT_CONFIG_DIR)
CONFIG_SUFFIXES = (".py", ".yaml", ".yml")


class ConfigNotFoundError(ConfigError, PathNotFoundError):
    """No config file of that name (the message names the closest known configs)."""


def known_configs() -> List[Path]:
    """Every ``.py`` config under ``configs/`` and ``projects/mlla_rtdetr/configs/``."""
    return sorted(p for root in CONFIG_DIRS if root.is_dir() for p in root.rglob("*.py")
                  if "__pycache__" not in p.parts)


def _display(path: Path) -> str:
    """A config's path relative to the repository root (what a user types)."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _candidates(name: str) -> List[Path]:
    given = Path(name)
    names = [given] if given.suffix in CONFIG_SUFFIXES else [given, given.with_name(given.name + ".py")]
    paths = list(names)
    for n in names:
        if not n.is_absolute():
            paths += [root / n for root in CONFIG_DIRS] + [REPO_ROOT / n]
    return paths


def _closest(name: str, n: int = 3) -> List[str]:
    """The known configs whose names are closest to ``name`` (difflib), as repository paths."""
    by_name = {}  # "rtdetr_r18vd_6x_coco", "models/rtdetr_r18vd", "common/train" -> repository path
    for path in known_configs():
        root = next(r for r in CONFIG_DIRS if path.is_relative_to(r))
        by_name[str(path.relative_to(root).with_suffix(""))] = _display(path)
    query = Path(name)
    query = query.with_suffix("") if query.suffix in CONFIG_SUFFIXES else query
    parts = query.parts  # "projects/mlla_rtdetr/configs/x", "configs/common/x" -> "x", "common/x"
    if "configs" in parts:
        parts = parts[len(parts) - parts[::-1].index("configs"):]
    close = difflib.get_close_matches("/".join(parts), list(by_name), n=n, cutoff=0.6)
    if not close:  # compare file names alone (a wrong folder, an absolute path elsewhere)
        stems = {Path(k).name: k for k in by_name}
        close = [stems[s] for s in difflib.get_close_matches(query.name, list(stems), n=n, cutoff=0.6)]
    return [by_name[c] for c in close]


def _not_found_message(name: str) -> str:
    close = _closest(name)
    if close:
        hint = f" Did you mean {close[0]}?"
        if len(close) > 1:
            hint += f" (also close: {', '.join(close[1:])})"
    else:
        recipes = [_display(p) for p in known_configs() if p.parent == PROJECT_CONFIG_DIR]
        hint = " Recipes: " + ", ".join(recipes) + "." if recipes else ""
    if not PROJECT_CONFIG_DIR.is_dir():
        hint += (f" The configs live in the source checkout ({PROJECT_CONFIG_DIR} is missing): install "
                 "the project with `pip install -e .`.")
    return (
        f"Config file '{name}' does not exist (looked for it as a path, under configs/ and under "
        f"projects/mlla_rtdetr/configs/).{hint}"
    )


def config_path(name: str) -> Path:
    """Absolute path of the config ``name`` (see the module docstring for the forms accepted).

    Raises:
        ConfigNotFoundError: no such file; the message names the closest known configs.
    """
    for path in _candidates(str(name)):
        if path.is_file():
            return path.resolve()
    raise ConfigNotFoundError(_not_found_message(str(name)))


def get_config(name: str):
    """Load the config ``name`` (``LazyConfig.load``; no overrides), for recipes to build on."""
    from detectron2.config import LazyConfig  # here, so that resolving names does not import torch

    return LazyConfig.load(str(config_path(name)))


_SHAPE_CACHE: Dict[str, List[Tuple[int, int]]] = {}


def instantiate_on_meta(node):
    """``instantiate(node)`` on the ``meta`` device: shapes and parameter counts without memory or
    weight-init cost. The global torch RNG is left as it was, so the model built afterwards gets
    the same initial weights. A constructor that computes on tensor values fails here: make it
    compute those on the CPU explicitly (as ``generate_anchors`` and the MLLA drop-path rates do)."""
    import torch
    from detectron2.config import instantiate

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return instantiate(node)


def backbone_output_levels(backbone_cfg) -> List[Tuple[int, int]]:
    """``[(channels, stride), ...]`` of the outputs of the backbone a LazyCall config builds,
    sorted by stride. The backbone is instantiated on the ``meta`` device
    (:func:`instantiate_on_meta`); results are cached per config content."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(backbone_cfg, DictConfig):
        key = repr(OmegaConf.to_container(backbone_cfg, resolve=True))
    else:
        key = repr(backbone_cfg)
    if key not in _SHAPE_CACHE:
        backbone = instantiate_on_meta(backbone_cfg)
        if not hasattr(backbone, "output_shape"):
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
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(
        "backbone_channels", lambda node: [c for c, _ in backbone_output_levels(node)], replace=True
    )
    OmegaConf.register_new_resolver(
        "backbone_strides", lambda node: [s for _, s in backbone_output_levels(node)], replace=True
    )
