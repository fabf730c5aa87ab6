"""Validated ``key=value`` config overrides (detectron2 / hydra syntax).

``LazyConfig.apply_overrides`` silently creates any key it is given, so a typo such as
``train.max_iters=100`` would be ignored. :func:`apply_overrides` first checks every key:

* it exists in the config, or
* its parent is a LazyCall (``_target_``) whose callable accepts that argument (e.g.
  ``model.num_top_queries`` when the recipe kept the constructor default), or
* it is written ``+key=value`` (explicitly adds a new key, as in hydra).

Otherwise :class:`UnknownConfigKeyError` names the key and the closest valid ones (difflib).
Overrides are checked and applied one after the other, so a key may refer to what an earlier
override created.

A dict value with a ``_target_`` that differs from the node's own *replaces* the node (merging the
arguments of one callable into those of another never makes sense), e.g. swapping a backbone::

    'model.backbone={_target_: mlla_rtdetr.modeling.TimmBackbone, model_name: resnet50}'

Its keys must be arguments of the new target (unless it takes ``**kwargs``).
"""
from __future__ import annotations

import copy
import difflib
import inspect
from typing import Iterable, List, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyConfig
from detectron2.utils.registry import locate

from ..errors import ConfigError

__all__ = ["OverrideError", "UnknownConfigKeyError", "apply_overrides", "check_override_keys", "all_config_keys"]


class OverrideError(ConfigError):
    """A command-line override is malformed (not ``key=value``) or names an unknown key."""


class UnknownConfigKeyError(OverrideError, KeyError):
    """An override names a key that does not exist in the config."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def all_config_keys(cfg, prefix: str = "") -> List[str]:
    """Every dotted key path of ``cfg`` (dicts and lists, leaves and inner nodes)."""
    keys: List[str] = []
    if isinstance(cfg, DictConfig):
        items = [(str(k), cfg._get_node(k)) for k in cfg.keys()]
    elif isinstance(cfg, ListConfig):
        items = [(str(i), cfg._get_node(i)) for i in range(len(cfg))]
    else:
        return keys
    for k, node in items:
        path = f"{prefix}.{k}" if prefix else k
        keys.append(path)
        if isinstance(node, (DictConfig, ListConfig)):
            keys.extend(all_config_keys(node, path))
    return keys


def _target_params(node) -> Optional[List[str]]:
    """Argument names accepted by the ``_target_`` of a LazyCall node (None: accepts **kwargs
    or cannot be inspected)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    target = node._get_node("_target_")
    target = target._value() if hasattr(target, "_value") else target
    try:
        fn = locate(target) if isinstance(target, str) else target
        sig = inspect.signature(fn)
    except (TypeError, ValueError, ImportError, AttributeError):
        return None
    params = sig.parameters.values()
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind != inspect.Parameter.VAR_POSITIONAL]


def _key_is_valid(cfg, key: str) -> bool:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig):
            if part in node:
                node = node._get_node(part)
                node = node if isinstance(node, (DictConfig, ListConfig)) else None
                if node is None:
                    return i == len(parts) - 1
                continue
            params = _target_params(node)
            if params is None and "_target_" in node:
                return i == len(parts) - 1  # **kwargs target: any new leaf argument is fine
            return params is not None and part in params and i == len(parts) - 1
        if isinstance(node, ListConfig):
            if part.isdigit() and int(part) < len(node):
                node = node._get_node(int(part))
                node = node if isinstance(node, (DictConfig, ListConfig)) else None
                if node is None:
                    return i == len(parts) - 1
                continue
            return False
        return False
    return True


def _split(override: str):
    if "=" not in override:
        hint = " Options such as --num-gpus go before the key=value overrides." if override.startswith("-") else ""
        raise OverrideError(f"Override '{override}' is not of the form key=value.{hint}")
    key, value = override.split("=", 1)
    key = key.strip()
    if key.startswith("~"):
        raise OverrideError(f"Deleting keys ('{override}') is not supported by train_net overrides.")
    return key, value


def check_override_keys(cfg, overrides: Sequence[str]) -> None:
    """Raise :class:`UnknownConfigKeyError` for the first override whose key is unknown."""
    known: Optional[List[str]] = None
    for override in overrides:
        key, _ = _split(override)
        if key.startswith("+"):
            continue
        if _key_is_valid(cfg, key):
            continue
        known = known if known is not None else all_config_keys(cfg)
        close = difflib.get_close_matches(key, known, n=5, cutoff=0.6)
        if not close:  # a typo in the last component: compare siblings by their last name
            parent, _, leaf = key.rpartition(".")
            siblings = [k for k in known if k.rpartition(".")[0] == parent]
            close = difflib.get_close_matches(key, siblings, n=5, cutoff=0.0)[:3]
        hint = f" Closest valid keys: {', '.join(close)}." if close else ""
        raise UnknownConfigKeyError(
            f"Unknown config key '{key}' in override '{override}'.{hint} "
            f"Prefix the key with '+' to add a new key on purpose."
        )


def _parse_value(override: str):
    """The value of ``key=value`` as hydra's override grammar reads it (as detectron2 does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([override])[0].value()
    except Exception as e:  # hydra raises its own OverrideParseException with the position
        raise OverrideError(f"Cannot parse override '{override}': {e}") from None


def _node_replacement(cfg, key: str, value):
    """The new node when ``value`` is a LazyCall dict whose ``_target_`` differs from the one at
    ``key``; None when the override is an ordinary (merging) update. Either way the dict's keys
    must be arguments of its target."""
    if not (isinstance(value, dict) and "_target_" in value):
        return None
    node = OmegaConf.select(cfg, key, default=None)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    try:
        target = locate(value["_target_"]) if isinstance(value["_target_"], str) else value["_target_"]
    except ImportError as e:  # detectron2's locate reports every name it cannot find as ImportError
        raise OverrideError(f"'{key}': cannot import _target_ '{value['_target_']}' ({e}).") from None
    own = node._get_node("_target_")
    own = own._value() if hasattr(own, "_value") else own
    try:
        own = locate(own) if isinstance(own, str) else own
    except ImportError:  # a target gone since the config was saved: the override replaces it
        own = None
    new = OmegaConf.create(value, flags={"allow_objects": True})
    params = _target_params(new)
    if params is not None:
        bad = [k for k in value if k != "_target_" and k not in params]
        if bad:
            raise UnknownConfigKeyError(
                f"'{key}': {value['_target_']} takes no argument(s) {bad}; it takes {params}."
            )
    return None if own is target else new


def _apply_checked(cfg, overrides: Sequence[str]) -> None:
    for override in overrides:
        check_override_keys(cfg, [override])
        cleaned = override[1:] if override.startswith("+") else override
        key, _ = _split(cleaned)
        if "{" in cleaned and "_target_" in cleaned:
            new = _node_replacement(cfg, key, _parse_value(cleaned))
            if new is not None:
                OmegaConf.update(cfg, key, new, merge=False)
                continue
        LazyConfig.apply_overrides(cfg, [cleaned])


def apply_overrides(cfg, overrides: Iterable[str]):
    """Validate then apply ``overrides`` (list of ``key=value``) in place, one after the other;
    returns ``cfg``. A bad override raises before ``cfg`` is changed at all."""
    overrides = list(overrides or [])
    if overrides:
        _apply_checked(copy.deepcopy(cfg), overrides)
        _apply_checked(cfg, overrides)
    return cfg
