"""The one place that finds the state dict inside a checkpoint container.

Known containers (``where`` names the entry):

==================  ==========================================================================
``"ema.module"``    official RT-DETR / RT-DETRv2 / D-FINE / DEIM training checkpoints (EMA weights),
                    and this code base's (``{"model": ..., "ema": {"module": ..., "updates": n}}``)
``"model"``         the same files' raw weights; official MLLA ImageNet checkpoints; detectron2
``"state_dict"``    mmdetection checkpoints (official MLLA detection)
``"state_dict_ema"`` official MLLA ImageNet checkpoints trained with EMA
``"raw"``           a bare state dict
==================  ==========================================================================

A DistributedDataParallel ``module.`` prefix on every key is removed.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Optional, Sequence, Tuple

import torch

from ..errors import CheckpointError

__all__ = ["CheckpointConversionError", "CONTAINERS", "extract_state_dict", "find_container", "strip_module_prefix"]

CONTAINERS = ("ema.module", "model", "state_dict", "state_dict_ema")


class CheckpointConversionError(CheckpointError):
    """A checkpoint cannot be read as a state dict or mapped exactly; the message says which keys."""


def _entry(checkpoint: Mapping, where: str) -> Optional[Mapping]:
    if where == "ema.module":
        ema = checkpoint.get("ema")
        value = ema.get("module") if isinstance(ema, Mapping) else None
    else:
        value = checkpoint.get(where)
    return value if isinstance(value, Mapping) else None


def find_container(checkpoint: Mapping, sources: Sequence[str] = CONTAINERS) -> Optional[str]:
    """The first of ``sources`` that ``checkpoint`` holds a mapping under, else None."""
    return next((w for w in sources if _entry(checkpoint, w) is not None), None)


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """``state`` without a DistributedDataParallel ``module.`` prefix (only when every key has it)."""
    if state and all(k.startswith("module.") for k in state):
        return OrderedDict((k[len("module."):], v) for k, v in state.items())
    return OrderedDict(state)


def extract_state_dict(checkpoint: Mapping, sources: Sequence[str] = CONTAINERS,
                       raw: bool = True) -> Tuple["OrderedDict[str, torch.Tensor]", str]:
    """(state dict, where it was found) from the first of ``sources`` present in ``checkpoint``,
    else the mapping itself when ``raw``. Raises :class:`CheckpointConversionError` for anything
    but a mapping of tensors."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointConversionError(f"Expected a checkpoint dict, got {type(checkpoint).__name__}.")
    where = find_container(checkpoint, sources)
    if where is None:
        if not raw:
            raise CheckpointConversionError(
                f"The checkpoint has none of {', '.join(repr(s) for s in sources)} (top-level keys: "
                f"{sorted(map(str, checkpoint))[:10]}).")
        where = "raw"
    state = checkpoint if where == "raw" else _entry(checkpoint, where)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointConversionError(
            f"The state dict found under '{where}' has non-tensor entries {bad[:5]}; expected a checkpoint "
            f"stored raw or under {', '.join(repr(s) for s in sources)}."
        )
    stripped = strip_module_prefix(state)
    if state and next(iter(stripped)) != next(iter(state)):
        where += " (DistributedDataParallel 'module.' prefix removed)"
    return stripped, where
