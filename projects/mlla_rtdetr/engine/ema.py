"""Exponential moving average of model weights with RT-DETR's warm-up decay.

After ``t`` updates the decay is ``decay * (1 - exp(-t / warmups))``: early on the average
follows the raw weights closely, later it approaches ``decay``. Every floating-point entry of the
state dict (parameters and buffers such as BN statistics) is averaged; integer buffers are copied.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict

import torch
from torch import nn

from detectron2.engine import HookBase

__all__ = ["ModelEMA", "EMAHook", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


class ModelEMA:
    """Keeps ``module``, an eval-mode copy of the model holding the averaged weights.

    Args:
        model: the model to track (DDP wrappers are removed).
        decay: asymptotic decay (RT-DETR: 0.9999).
        warmups: warm-up time constant in updates (RT-DETR: 2000).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmups: float = 2000):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if warmups <= 0:
            raise ValueError(f"EMA warmups must be positive, got {warmups}")
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmups = float(warmups)
        self.updates = 0

    def decay_at(self, updates: int) -> float:
        """Decay used by the ``updates``-th update (1-based)."""
        return self.decay * (1.0 - math.exp(-updates / self.warmups))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay_at(self.updates)
        source = unwrap_model(model).state_dict()
        for name, avg in self.module.state_dict().items():
            value = source[name].detach()
            if avg.dtype.is_floating_point:
                # two roundings, as the official update (an add_ with alpha may fuse them)
                avg.mul_(d)
                avg.add_((1.0 - d) * value.to(avg.dtype))
            else:
                avg.copy_(value)

    def state_dict(self) -> Dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state.get("updates", 0))

    def __repr__(self) -> str:
        return f"ModelEMA(decay={self.decay}, warmups={self.warmups}, updates={self.updates})"


class EMAHook(HookBase):
    """Updates a :class:`ModelEMA` after every optimizer step.

    The EMA itself is saved by the checkpointer (as the ``"ema"`` checkpointable), so this hook
    keeps no state of its own.
    """

    def __init__(self, ema: ModelEMA, model: nn.Module):
        self.ema = ema
        self.model = model

    def after_step(self):
        self.ema.update(self.model)
