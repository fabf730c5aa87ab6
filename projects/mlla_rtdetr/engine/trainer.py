"""Training loop: one trainer for CPU and CUDA, with optional AMP and gradient clipping.

detectron2's ``AMPTrainer`` asserts CUDA; :class:`Trainer` runs the same step on any device:

    data -> seed RNGs for (seed, rank, iteration) -> autocast forward -> finite-loss check
    -> zero_grad -> (scaled) backward -> unscale -> clip_grad_norm_ -> (scaler) step

Seeding every iteration from (seed, rank, iteration) makes random ops inside the model (e.g.
denoising-query noise) independent of what ran before, so a resumed run repeats exactly the
iterations of an uninterrupted one.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Dict, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist

from detectron2.engine import SimpleTrainer
from detectron2.utils import comm

__all__ = ["Trainer", "NonFiniteLossError", "seed_iteration", "AMP_DTYPES"]

logger = logging.getLogger(__name__)

AMP_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
              "bf16": torch.bfloat16}


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; raised before the optimizer step (weights untouched)."""


def seed_iteration(seed: int, rank: int, iteration: int) -> None:
    """Seed python, numpy and torch (all devices) from (seed, rank, iteration)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(iteration)])
    value = int(state.generate_state(1, dtype=np.uint32)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class Trainer(SimpleTrainer):
    """SimpleTrainer with AMP (CPU or CUDA), gradient clipping, per-iteration seeding and a
    finite-loss check that names the iteration and the offending loss terms.

    Args:
        model, data_loader, optimizer: as in ``SimpleTrainer``.
        amp: enable ``torch.autocast`` on ``device_type``.
        amp_dtype: "float16" or "bfloat16". float16 uses a GradScaler (loss scaling); bfloat16
            does not need one.
        device_type: "cuda" or "cpu" (autocast / GradScaler device).
        clip_grad: ``dict(max_norm=..., norm_type=...)`` or None.
        seed: base seed for :func:`seed_iteration`; None disables per-iteration seeding.
        grad_scaler: an existing ``torch.amp.GradScaler`` (default: a new one when needed).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader,
        optimizer: torch.optim.Optimizer,
        amp: bool = False,
        amp_dtype: str = "float16",
        device_type: str = "cpu",
        clip_grad: Optional[Mapping] = None,
        seed: Optional[int] = None,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        gather_metric_period: int = 1,
    ):
        super().__init__(model, data_loader, optimizer, gather_metric_period=gather_metric_period)
        if amp_dtype not in AMP_DTYPES:
            raise ValueError(f"train.amp.dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype!r}")
        if isinstance(model, torch.nn.DataParallel):
            raise ValueError("DataParallel is not supported: launch one process per device (DDP).")
        self.amp = bool(amp)
        self.amp_dtype = AMP_DTYPES[amp_dtype]
        self.device_type = device_type
        if self.amp and self.amp_dtype == torch.float16 and device_type == "cpu":
            logger.warning("float16 autocast on CPU is slow and poorly supported; prefer bfloat16.")
        use_scaler = self.amp and self.amp_dtype == torch.float16
        self.grad_scaler = grad_scaler or torch.amp.GradScaler(device_type, enabled=use_scaler)
        self.clip_grad = dict(clip_grad) if clip_grad else None
        self.seed = seed

    def run_step(self):
        assert self.model.training, "[Trainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        # Seed after fetching: creating the loader iterator (first step after a start or resume)
        # draws from the global RNG, which must not shift the model's random ops.
        if self.seed is not None:
            seed_iteration(self.seed, comm.get_rank(), self.iter)

        try:
            with torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.amp):
                loss_dict = self.model(data)
        except FloatingPointError as e:  # e.g. the matcher met NaN predictions before any loss
            if isinstance(e, NonFiniteLossError):
                raise
            raise NonFiniteLossError(
                f"Non-finite values at iteration {self.iter} on rank {comm.get_rank()} during the "
                f"forward pass ({e}). The optimizer step was skipped; the last saved checkpoint is "
                "intact. Try a lower lr, gradient clipping (train.clip_grad) or disabling AMP."
            ) from e
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(v.float() for v in loss_dict.values())
        self._check_finite(loss_dict, losses)

        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        grad_norm = None
        if self.clip_grad is not None:
            self.grad_scaler.unscale_(self.optimizer)
            # model order, as the official clip over model.parameters(): the norm's summation order
            params = [p for p in self.model.parameters() if p.grad is not None]
            if params:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, **self.clip_grad)
        self._write_metrics(loss_dict, data_time)
        if grad_norm is not None and comm.is_main_process():
            self.storage.put_scalar("grad_norm", float(grad_norm), smoothing_hint=False)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _check_finite(self, loss_dict: Dict[str, torch.Tensor], total: torch.Tensor) -> None:
        finite = torch.isfinite(total.detach())
        if comm.get_world_size() > 1:
            # Every rank must stop together, otherwise the others hang in backward's all-reduce.
            flag = finite.to(torch.float32).reshape(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag[0] > 0
        if bool(finite):
            return
        bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v.detach()).all()}
        where = f"rank {comm.get_rank()}" if bad else f"another rank (this is rank {comm.get_rank()})"
        raise NonFiniteLossError(
            f"Non-finite loss at iteration {self.iter} on {where}: "
            f"{bad if bad else 'all local terms finite'}. All terms: "
            + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
            + ". The optimizer step was skipped; the last saved checkpoint is intact. Try a lower "
            "lr, gradient clipping (train.clip_grad) or disabling AMP."
        )

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler.is_enabled():
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler.is_enabled() and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
