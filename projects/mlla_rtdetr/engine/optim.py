"""Optimizer parameter groups: backbone lr multiplier, no weight decay on norms/biases, regex rules.

:func:`get_param_groups` assigns every trainable parameter an (lr, weight_decay) pair in three
steps, then merges parameters with identical hyper-parameters into one group:

1. defaults: ``base_lr`` and ``weight_decay``;
2. by kind: parameters of normalization layers get ``weight_decay_norm``, biases get
   ``weight_decay_bias``, parameters whose name starts with ``backbone_prefix`` get
   ``lr * backbone_lr_multiplier`` (``None`` leaves the step-1 value);
3. ``rules``: an ordered list of ``dict(pattern=REGEX, lr=..., lr_mult=..., weight_decay=...)``;
   the FIRST rule whose pattern matches the parameter name (``re.search``) overrides the values
   it names (``lr`` absolute, ``lr_mult`` relative to ``base_lr``). This expresses the official
   RT-DETR YAML groups (see :data:`RTDETR_V1_RULES`, :data:`RTDETR_V2_RULES`), whose patterns are
   disjoint so first-match equals their semantics.

The resulting lrs are the *initial* lrs; the lr schedule multiplies all of them by one factor.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm

__all__ = [
    "get_param_groups",
    "NORM_MODULE_TYPES",
    "RTDETR_V1_RULES",
    "RTDETR_V2_RULES",
    "RTDETR_V2_R18_RULES",
    "describe_param_groups",
]

logger = logging.getLogger(__name__)

NORM_MODULE_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
    FrozenBatchNorm2d,
    NaiveSyncBatchNorm,
)

# Official rtdetr_pytorch/configs/rtdetr/rtdetr_r18vd_6x_coco.yml (lr 1e-5 = 0.1 x base 1e-4).
RTDETR_V1_RULES = [
    dict(pattern=r"^(?=.*backbone)(?=.*norm).*$", lr_mult=0.1, weight_decay=0.0),
    dict(pattern=r"^(?=.*backbone)(?!.*norm).*$", lr_mult=0.1),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bias)).*$", weight_decay=0.0),
]
# Official rtdetrv2_pytorch/configs/rtdetrv2/include/optimizer.yml (r50/r101 and hgnetv2).
RTDETR_V2_RULES = [
    dict(pattern=r"^(?=.*backbone)(?!.*norm).*$", lr_mult=0.1),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]
# Official rtdetrv2_r18vd_120e_coco.yml: backbone at the base lr, no decay on any norm.
RTDETR_V2_R18_RULES = [
    dict(pattern=r"^(?=.*(?:norm|bn)).*$", weight_decay=0.0),
]

_RULE_KEYS = {"pattern", "lr", "lr_mult", "weight_decay"}


def _validate_rules(rules: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for i, rule in enumerate(rules or ()):
        rule = dict(rule)
        unknown = set(rule) - _RULE_KEYS
        if "pattern" not in rule or unknown:
            raise ValueError(
                f"Param-group rule #{i} {rule} is invalid: it needs 'pattern' and may set "
                f"{sorted(_RULE_KEYS - {'pattern'})}; unknown keys: {sorted(unknown)}"
            )
        if "lr" in rule and "lr_mult" in rule:
            raise ValueError(f"Param-group rule #{i} sets both 'lr' and 'lr_mult': {rule}")
        rule["regex"] = re.compile(rule["pattern"])
        out.append(rule)
    return out


def get_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: Optional[float] = 0.0,
    weight_decay_bias: Optional[float] = 0.0,
    backbone_lr_multiplier: Optional[float] = None,
    backbone_prefix: str = "backbone.",
    rules: Sequence[Dict[str, Any]] = (),
    strict_rules: bool = True,
) -> List[Dict[str, Any]]:
    """Param groups for ``torch.optim`` constructors (see the module docstring for the order).

    Args:
        model: the (non-DDP) model; set by the engine as ``cfg.optimizer.params.model``.
        base_lr, weight_decay: defaults of every parameter (the optimizer's lr / weight_decay).
        weight_decay_norm: weight decay of normalization-layer parameters (``None``: default).
        weight_decay_bias: weight decay of parameters named ``*.bias`` (``None``: default).
        backbone_lr_multiplier: lr factor of parameters under ``backbone_prefix`` (``None``: 1).
        rules: ordered regex overrides, first match wins.
        strict_rules: raise when a rule matches no trainable parameter (catches renamed modules).

    Returns:
        list of ``{"params": [...], "lr": float, "weight_decay": float, "names": [...]}``;
        "names" is informational (optimizers keep unknown group keys).
    """
    if model is None:
        raise ValueError(
            "get_param_groups needs the model: the engine sets cfg.optimizer.params.model before "
            "instantiating the optimizer."
        )
    compiled = _validate_rules(rules)
    rule_hits = [0] * len(compiled)
    seen = set()
    groups: "OrderedDict[tuple, Dict[str, Any]]" = OrderedDict()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            name = f"{module_name}.{param_name}" if module_name else param_name
            lr, wd = float(base_lr), float(weight_decay)
            if isinstance(module, NORM_MODULE_TYPES) and weight_decay_norm is not None:
                wd = float(weight_decay_norm)
            elif param_name == "bias" and weight_decay_bias is not None:
                wd = float(weight_decay_bias)
            if backbone_lr_multiplier is not None and name.startswith(backbone_prefix):
                lr *= float(backbone_lr_multiplier)
            for i, rule in enumerate(compiled):
                if rule["regex"].search(name):
                    rule_hits[i] += 1
                    if "lr" in rule:
                        lr = float(rule["lr"])
                    if "lr_mult" in rule:
                        lr = float(base_lr) * float(rule["lr_mult"])
                    if "weight_decay" in rule:
                        wd = float(rule["weight_decay"])
                    break
            group = groups.setdefault(
                (lr, wd), {"params": [], "lr": lr, "weight_decay": wd, "names": []}
            )
            group["params"].append(param)
            group["names"].append(name)
    unused = [compiled[i]["pattern"] for i, n in enumerate(rule_hits) if n == 0]
    if unused and strict_rules:
        raise ValueError(
            f"Param-group rules matched no trainable parameter: {unused}. Check the pattern "
            "against model.named_parameters(), or pass strict_rules=False."
        )
    if not groups:
        raise ValueError("The model has no trainable parameters.")
    return list(groups.values())


def describe_param_groups(optimizer: torch.optim.Optimizer) -> str:
    """A small table (one line per group) of lr, weight decay and parameter count."""
    lines = ["param groups:  #  lr          weight_decay  #tensors  #elements  example"]
    for i, g in enumerate(optimizer.param_groups):
        names = g.get("names") or []
        numel = sum(p.numel() for p in g["params"])
        example = names[0] if names else ""
        lines.append(
            f"              {i:2d}  {g.get('initial_lr', g['lr']):<10.4g}  "
            f"{g['weight_decay']:<12.4g}  {len(g['params']):<8d}  {numel:<9d}  {example}"
        )
    return "\n".join(lines)
