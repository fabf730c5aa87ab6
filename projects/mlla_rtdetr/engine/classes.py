"""The model and the data agree on the classes: checked on the config before anything is built
(:func:`prepare_data`) and on the built model (:func:`check_num_classes`)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from ..data import dataset_classes, dataset_nodes, prepare_datasets, register_node
from ..errors import ConfigError, DataError
from .ema import unwrap_model

__all__ = ["check_num_classes", "prepare_data"]


_CLASS_KEYS = ("model.num_classes", "model.criterion.num_classes", "model.decoder.num_classes")


def _literal_int(cfg: DictConfig, key: str) -> Optional[int]:
    """The int at ``key`` when it is written there (not an interpolation of another key)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None)
    if not OmegaConf.is_config(parent) or leaf not in parent or OmegaConf.is_interpolation(parent, leaf):
        return None
    value = parent[leaf]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _model_class_counts(cfg: DictConfig, model: Optional[torch.nn.Module]) -> "OrderedDict[str, int]":
    counts: "OrderedDict[str, int]" = OrderedDict()
    if model is not None:
        m = unwrap_model(model)
        for key in _CLASS_KEYS:
            obj = m
            for part in key.split(".")[1:-1]:
                obj = getattr(obj, part, None)
            value = getattr(obj, "num_classes", None)
            if isinstance(value, int):
                counts[key] = value
    else:
        for key in _CLASS_KEYS:
            value = OmegaConf.select(cfg, key, default=None)
            if isinstance(value, int) and not isinstance(value, bool):
                counts[key] = value
    return counts


def check_num_classes(cfg: DictConfig, model: Optional[torch.nn.Module] = None,
                      classes: Optional[Dict[str, Sequence[str]]] = None) -> int:
    """The model (its config, or the built ``model``), its criterion and decoder, and every dataset
    of ``cfg.dataloader`` must agree on the classes. Checked on the config before anything is
    built (:func:`prepare_data`) and on the built model.

    Args:
        classes: config key of each dataset (``"dataloader.train.dataset"``) -> its class names, as
            :func:`prepare_data` found them; by default read from the datasets the config names
            (registered from their source fields when needed).

    Raises :class:`DataError` when the datasets disagree with each other and :class:`ConfigError`
    naming the exact overrides to add when the model disagrees with them. Returns the count
    (0 when the config names no dataset).
    """
    if classes is None:
        classes = {key: dataset_classes(register_node(node, key)[0]) for key, node in dataset_nodes(cfg).items()}
    if not classes:
        return 0
    (first_key, first), *rest = classes.items()
    for key, names in rest:
        if list(names) != list(first):
            raise DataError(
                f"The datasets disagree on the classes: {first_key} has {list(first)}, {key} has "
                f"{list(names)}. Train and test data must have the same classes in the same order "
                "(set class_names on both to pin them)."
            )
    k = len(first)
    counts = _model_class_counts(cfg, model)
    if all(v == k for v in counts.values()):
        return k
    fixes = ["model.num_classes"] + [key for key in _CLASS_KEYS[1:] if _literal_int(cfg, key) is not None]
    shown = ", ".join(f"{key}={v}" for key, v in counts.items())
    names = ", ".join(first) if k <= 10 else ", ".join(list(first)[:10]) + f", ... ({k - 10} more)"
    raise ConfigError(
        f"The model is set up for a different number of classes than the data: {shown}, but "
        f"{' and '.join(classes)} {'have' if len(classes) > 1 else 'has'} {k} class{'es' if k != 1 else ''} "
        f"({names}). Add {'these overrides' if len(fixes) > 1 else 'this override'}:\n  "
        + " ".join(f"{key}={k}" for key in fixes)
    )


def prepare_data(cfg: DictConfig, splits: Sequence[str] = ("train", "test"), check_files: bool = True,
                 keep_loaded: bool = True) -> Dict[str, List[str]]:
    """Before anything is built: register, load and check the datasets of ``cfg.dataloader``
    (:func:`mlla_rtdetr.data.prepare_datasets`; ``splits``: the loaders to prepare), then check
    the model config's class count against them. Returns config key -> class names, for
    :func:`check_num_classes` on the built model."""
    prepared = prepare_datasets(cfg, splits=splits, check_files=check_files, keep_loaded=keep_loaded)
    classes = {p.key: p.classes for p in prepared}
    check_num_classes(cfg, classes=classes)
    return classes
