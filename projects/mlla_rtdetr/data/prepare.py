"""A run's datasets made ready before anything is built: registered wherever they come from,
loaded and checked once; their class names are what the engine checks the model against
(:func:`mlla_rtdetr.engine.prepare_data`).

``tools/train_net.py`` prepares them in the launching process before it starts several (so a data
mistake ends with one message and exit status 2 before any worker starts) and again at the start
of every training / evaluation process (which registers the datasets there and hands the loaded
dicts to the loaders built next, so nothing is read twice).
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from ..errors import ConfigError, UserError
from .datasets.base import known_dataset_or_raise
from .datasets.catalog import (
    SOURCE_FIELDS,
    dataset_classes,
    dataset_format,
    get_dataset_dicts,
    hold_dataset_dicts,
    load_summary,
    register_dataset,
)

__all__ = ["PreparedDataset", "dataset_nodes", "dataset_spec", "register_node", "prepare_datasets",
           "config_class_names"]

logger = logging.getLogger(__name__)

_SPEC_ARGS = ("names", "json_file", "image_root", "voc_root", "yolo_yaml", "split", "filter_empty")
_SOURCE_ARGS = ("json_file", "image_root", "voc_root", "yolo_yaml", "split", "class_names")


@dataclass
class PreparedDataset:
    key: str  # config key of the dataset node, e.g. "dataloader.train.dataset"
    names: List[str]
    classes: List[str]
    num_images: Optional[int]  # None for datasets not read through get_dataset_dicts

    def describe(self) -> str:
        k = len(self.classes)
        shown = ", ".join(self.classes[:10]) + (f", ... ({k - 10} more)" if k > 10 else "")
        loads = [load_summary(n) for n in self.names]
        if self.num_images is None or None in loads:
            loads = [] if self.num_images is None else [f"{self.num_images} images"]
        return f"{self.key} {'+'.join(self.names)}: {'; '.join(loads + [''])}{k} class{'es' if k != 1 else ''} [{shown}]"


def dataset_nodes(cfg: DictConfig, splits: Sequence[str] = ("train", "test")) -> "OrderedDict[str, DictConfig]":
    """Config key -> dataset node (``dataloader.train.dataset``, ``dataloader.test.dataset``) of
    the loaders that name their dataset by ``names``."""
    nodes: "OrderedDict[str, DictConfig]" = OrderedDict()
    loaders = cfg.get("dataloader") if OmegaConf.is_config(cfg) else None
    for split in splits:
        loader = loaders.get(split) if OmegaConf.is_config(loaders) else None
        node = loader.get("dataset") if OmegaConf.is_config(loader) else None
        if OmegaConf.is_config(node) and node.get("names") is not None:
            nodes[f"dataloader.{split}.dataset"] = node
    return nodes


def _reads_catalog(node: DictConfig) -> bool:
    target = node.get("_target_")
    if isinstance(target, str):
        from detectron2.utils.registry import locate

        try:
            target = locate(target)
        except ImportError:
            return False
    return target is get_dataset_dicts


def _names(node: DictConfig) -> List[str]:
    names = node.names
    return [names] if isinstance(names, str) else [str(n) for n in names]


def dataset_spec(node: DictConfig, key: str = "dataset") -> Dict[str, Any]:
    """The arguments of the dataset node at config key ``key``, interpolations resolved
    (:class:`ConfigError` naming a value the config requires but nobody set, e.g. the
    ``yolo_yaml`` of ``yolo_detection.py``)."""
    missing = []
    for field in node:
        try:
            node[field]
        except (MissingMandatoryValue, InterpolationToMissingValueError):
            missing.append(f"{key}.{field}")
    if missing:
        raise ConfigError(f"{', '.join(missing)} required by the config: set "
                          + " ".join(f"{m}=..." for m in missing))
    spec = OmegaConf.to_container(node, resolve=True)
    spec.pop("_target_", None)
    return spec


def prepare_datasets(
    cfg: DictConfig,
    splits: Sequence[str] = ("train", "test"),
    check_files: bool = True,
    keep_loaded: bool = True,
) -> List[PreparedDataset]:
    """Register, load and check the datasets of ``cfg.dataloader`` (``splits``: the loaders to
    prepare; evaluation needs only "test"); returns them with their class names.

    * Datasets read through ``get_dataset_dicts`` are registered from their source fields,
      loaded, sanitized and (``check_files`` and the node's ``check_images``) every image file is
      checked to exist; their class names are written into the node's ``class_names`` when it is
      unset, so the run's saved config records them.
    * Datasets of other loaders must be registered already (by the user's code).
    * ``keep_loaded``: hand the loaded dicts to the next loader built from this config in this
      process; pass False before spawning processes that load their own.

    Raises a :class:`UserError` naming the config key of each dataset with a problem.
    """
    t0 = time.perf_counter()
    prepared: "OrderedDict[str, PreparedDataset]" = OrderedDict()
    errors: List[UserError] = []  # every dataset's problems in one message
    for key, node in dataset_nodes(cfg, splits).items():
        try:
            names = _names(node)
            if _reads_catalog(node):
                spec = dataset_spec(node, key)
                dicts = get_dataset_dicts(**dict(spec, check_images=bool(spec.get("check_images", True)) and check_files))
                if keep_loaded:
                    hold_dataset_dicts(dicts, **{k: spec.get(k) for k in _SPEC_ARGS})
                classes = dataset_classes(names[0])
                if "class_names" in node and node.class_names is None:
                    node.class_names = classes
                prepared[key] = PreparedDataset(key, names, classes, len(dicts))
            else:
                prepared[key] = PreparedDataset(key, names, dataset_classes(register_node(node, key)[0]), None)
        except UserError as e:
            errors.append(type(e)(f"{key}: {e}"))
    if errors:
        raise type(errors[0])("\n".join(dict.fromkeys(str(e) for e in errors)))
    if prepared:
        logger.info(
            "Datasets ready in %.1fs: %s", time.perf_counter() - t0,
            "; ".join(p.describe() for p in prepared.values()),
        )
    return list(prepared.values())


def config_class_names(cfg: DictConfig) -> Optional[List[str]]:
    """Class names of the config's test (else train) dataset: its ``class_names`` when the config
    records them (a run's config.yaml does), else read from the dataset (registering it from its
    source fields). None when the config names no dataset."""
    nodes = dataset_nodes(cfg)
    node = nodes.get("dataloader.test.dataset", nodes.get("dataloader.train.dataset"))
    if node is None:
        return None
    if node.get("class_names") is not None:
        return [str(c) for c in node.class_names]
    return dataset_classes(register_node(node)[0])


def register_node(node: DictConfig, key: str = "dataset") -> List[str]:
    """Register the dataset(s) of the dataset node at config key ``key`` (from its source fields,
    if it has them); returns the names."""
    if _reads_catalog(node):
        spec = dataset_spec(node, key)
        if dataset_format(*(spec.get(k) for k in SOURCE_FIELDS)) is not None:
            register_dataset(spec["names"], **{k: spec.get(k) for k in _SOURCE_ARGS})
    names = _names(node)
    for name in names:
        known_dataset_or_raise(name)
    return names
