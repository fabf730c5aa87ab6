"""The cost of the training step's stop flags with several processes (``tools/benchmark.py
step-flags``).

Every process builds the config's model under DDP (SyncBN as configured) and runs the real
:class:`~mlla_rtdetr.engine.trainer.Trainer` step on a fixed random batch, timed interleaved (the
same call order on every process, so the collectives pair up) in three variants:

* ``no flags``: the step with the flag collective replaced by local flags (what a step would cost
  if no rank ever had to learn about another's failure; it would hang instead);
* ``one all-reduce``: the step as it runs (:func:`~mlla_rtdetr.engine.step_flags.agree_step_flags`);
* ``three collectives``: the step with the collectives it had before the flags were merged (a
  finite-check all-reduce, a preemption all-reduce, a pickled all_gather of unreadable images).

Alone: the flag collective, the three former ones, and one poll of the failure watcher (the
store lookups its thread makes once a second, :class:`~mlla_rtdetr.engine.step_flags.FailureChannel`).

Rank 0 writes the timings to a JSON file that the tool reads back.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import torch
import torch.distributed as dist
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from mlla_rtdetr.engine import Trainer, build_model, create_ddp_model, load_config
from mlla_rtdetr.engine import trainer as trainer_module
from mlla_rtdetr.engine.step_flags import FailureChannel, StepFlags, agree_step_flags
from mlla_rtdetr.utils.bench_cases import random_instances
from mlla_rtdetr.utils.timing import measure_interleaved

__all__ = ["VARIANTS", "run_step_flags_worker"]

VARIANTS = ("no flags", "one all-reduce", "three collectives")


def _local_flags(failure: int = 0, stop_requested: bool = False, bad_images: int = 0) -> StepFlags:
    return StepFlags((0,) * comm.get_world_size(), bool(stop_requested), int(bad_images))


def _three_collectives(failure: int = 0, stop_requested: bool = False, bad_images: int = 0) -> StepFlags:
    finite = torch.tensor([1.0 if failure != 3 else 0.0])
    dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    stop = torch.tensor([int(stop_requested)], dtype=torch.int32)
    dist.all_reduce(stop, op=dist.ReduceOp.MAX)
    comm.all_gather([])  # the unreadable images of the step (usually none), pickled
    return _local_flags(failure, bool(stop.item()), bad_images)


_FLAG_FUNCTIONS = {"no flags": _local_flags, "one all-reduce": agree_step_flags,
                   "three collectives": _three_collectives}


def run_step_flags_worker(spec: Dict[str, Any]) -> None:
    """One process of the benchmark (run by ``mlla_rtdetr.launch.launch``); ``spec``: config_file,
    overrides, input_size, batch_size (per process), warmup, iters, threads, output."""
    torch.set_num_threads(int(spec["threads"]))
    cfg = load_config(spec["config_file"], spec["overrides"])
    model = build_model(cfg, "cpu", checkpoint="")
    model.train()
    ddp_model = create_ddp_model(model, **cfg.train.get("ddp", {}))
    size = (spec["input_size"], spec["input_size"])
    batch = random_instances(spec["batch_size"], size, int(model.num_classes), seed=comm.get_rank())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    trainer = Trainer(ddp_model, _Repeat(batch), optimizer, seed=0, clip_grad=dict(max_norm=0.1))

    def step(variant: str):
        def fn():
            trainer_module.agree_step_flags = _FLAG_FUNCTIONS[variant]
            try:
                trainer.run_step()
            finally:
                trainer_module.agree_step_flags = agree_step_flags
            trainer.iter += 1
        return fn

    failures = FailureChannel()
    flags_alone = {"flags only: one all-reduce": lambda: agree_step_flags(),
                   "flags only: three collectives": lambda: _three_collectives(),
                   "failure watcher: one poll": failures.announcement}
    with EventStorage(0) as storage:
        trainer.storage, trainer.iter = storage, 0
        stats = measure_interleaved({v: step(v) for v in VARIANTS}, warmup=spec["warmup"], iters=spec["iters"])
        stats.update(measure_interleaved(flags_alone, warmup=spec["warmup"], iters=spec["iters"] * 10))
    if comm.is_main_process():
        with open(spec["output"], "w") as f:
            json.dump({k: v.as_dict() for k, v in stats.items()}, f)


class _Repeat:
    """An endless loader of one batch."""

    def __init__(self, batch: List[dict]):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch
