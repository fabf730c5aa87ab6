"""Helpers of the test_sweep_* end-to-end tests: a very small recipe and run inspection.

The recipe is the repository's ``rtdetr_tiny_synthetic.py`` on a smaller copy of the embedded
dataset (64 train / 16 val images of 128 px, registered as ``sweeptest_shapes_*`` in every
process that loads the config), so that a training run of ~10 iterations with its final
evaluation takes seconds on a CPU.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "tools" / "train_net.py"

DATASET_KNOBS = dict(image_size=128, num_train=64, num_val=16, max_objects=3)

RECIPE = '''"""Test recipe (written by tests/sweep_utils.py): tiny RT-DETR on 64+16 synthetic images."""
from mlla_rtdetr.config import get_config
from mlla_rtdetr.data.datasets import register_synthetic_shapes

register_synthetic_shapes("sweeptest_shapes", **{knobs!r})
_base = get_config("rtdetr_tiny_synthetic.py")

model = _base.model
model.encoder.eval_spatial_size = (128, 128)
model.decoder.eval_spatial_size = (128, 128)
model.decoder.num_queries = 20
model.num_top_queries = 20
model.decoder.num_denoising = 10

dataloader = _base.dataloader
dataloader.train.dataset.names = "sweeptest_shapes_train"
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 0
dataloader.train.multiscale_sizes = None
dataloader.train.mapper.image_size = (128, 128)
dataloader.test.dataset.names = "sweeptest_shapes_val"
dataloader.test.mapper.image_size = (128, 128)
dataloader.test.batch_size = 8

optimizer = _base.optimizer
lr_multiplier = _base.lr_multiplier
lr_multiplier.warmup = 4

train = _base.train
train.max_iter = 10
train.eval_period = 0
train.log_period = 1
train.checkpointer.period = 1000
train.model_ema.warmups = 10
train.device = "cpu"
'''


def write_recipe(directory: Path) -> Path:
    """Write the test recipe into ``directory`` and generate its dataset once (cached)."""
    from mlla_rtdetr.data.datasets import SyntheticShapesConfig, ensure_synthetic_shapes

    ensure_synthetic_shapes(SyntheticShapesConfig(**DATASET_KNOBS))
    path = Path(directory) / "sweeptest_recipe.py"
    path.write_text(RECIPE.format(knobs=DATASET_KNOBS))
    return path


def env(threads: int = 1) -> Dict[str, str]:
    """Subprocess environment: the test dataset cache, few threads (2 shared cores)."""
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = str(threads)
    e.setdefault("MLLA_RTDETR_CACHE", str(REPO / ".cache" / "tests"))
    return e


def train_cmd(recipe: Path, out: Path, *overrides: str, resume: bool = False) -> List[str]:
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", str(recipe)]
    if resume:
        cmd.append("--resume")
    return cmd + [f"train.output_dir={out}", *overrides]


def run(cmd: Sequence[str], log: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run to completion with output in ``log``; fail the test with the log tail on timeout."""
    with open(log, "ab") as f:
        try:
            return subprocess.run(list(cmd), stdout=f, stderr=subprocess.STDOUT, env=kw.pop("env", env()),
                                  cwd=str(REPO), timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{cmd} timed out; log tail:\n{tail(log)}")


def tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(Path(log).read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def last_checkpoint_iter(out: Path) -> Optional[int]:
    """Iteration of the checkpoint ``last_checkpoint`` names (from its file name), or None."""
    tag = Path(out) / "last_checkpoint"
    try:
        name = tag.read_text().strip()
    except FileNotFoundError:
        return None
    if name.startswith("model_") and name[6:13].isdigit():
        return int(name[6:13])
    return None


def wait_for(predicate, timeout: float, proc: Optional[subprocess.Popen] = None, what: str = "", log=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc={proc.returncode}) before {what}; log:\n{tail(log) if log else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; log:\n{tail(log) if log else ''}")


def load_state(path: Path) -> Dict[str, object]:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: different keys"
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"{what}: {len(diff)} tensors differ, e.g. {diff[:5]}"
