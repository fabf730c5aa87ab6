"""A run's length and periods in iterations, from the epochs or iterations its config gives."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from ..errors import ConfigError

__all__ = ["TrainingLength", "resolve_training_length"]


@dataclass
class TrainingLength:
    max_iter: int
    iters_per_epoch: Optional[int]
    eval_period: int
    checkpoint_period: int

    def describe(self) -> str:
        ipe = self.iters_per_epoch
        ep = f" = {self.max_iter / ipe:.2f} epochs of {ipe} iterations" if ipe else ""
        return (
            f"training length: {self.max_iter} iterations{ep}; eval every {self.eval_period or 'never'} "
            f"iterations (and at the end); checkpoint every {self.checkpoint_period or 'never'} iterations"
        )


def _iters(value_iter, value_epochs, ipe: Optional[int], what: str) -> int:
    if value_iter is not None:
        return int(value_iter)
    if value_epochs is None:
        return 0
    if not ipe:
        raise ConfigError(
            f"{what} is given in epochs but the train loader does not expose iters_per_epoch; "
            f"give {what} in iterations instead."
        )
    return int(round(float(value_epochs) * ipe))


def resolve_training_length(cfg: DictConfig, iters_per_epoch: Optional[int]) -> TrainingLength:
    """Turn epochs into iterations (iteration fields win when set) and write them back into
    ``cfg.train`` (max_iter, eval_period, checkpointer.period) so config.yaml is resolved."""
    t = cfg.train
    max_iter = _iters(t.get("max_iter"), t.get("epochs"), iters_per_epoch, "train.epochs")
    if max_iter <= 0:
        raise ConfigError("Set train.max_iter (iterations) or train.epochs to a positive value.")
    eval_period = _iters(t.get("eval_period"), t.get("eval_epochs"), iters_per_epoch, "train.eval_epochs")
    ck = t.checkpointer
    ckpt_period = _iters(ck.get("period"), ck.get("period_epochs"), iters_per_epoch, "train.checkpointer.period_epochs")
    t.max_iter, t.eval_period, ck.period = max_iter, eval_period, ckpt_period
    return TrainingLength(max_iter, iters_per_epoch, eval_period, ckpt_period)
