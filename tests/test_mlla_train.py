"""End-to-end: the tiny MLLA-RT-DETR recipe (MLLA backbone + MLLA encoder) trains on the embedded
synthetic dataset through tools/train_net.py and its AP rises. Slow (minutes on 2 CPU cores)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = "projects/mlla_rtdetr/configs/mlla_rtdetr_tiny_synthetic.py"


def _read_metrics(path: Path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_tiny_mlla_rtdetr_trains_and_ap_rises(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "tools/train_net.py", "--config-file", RECIPE,
        "train.max_iter=60", "train.eval_period=30", "train.log_period=10",
        "train.checkpointer.period=60", "train.model_ema.warmups=20",
        "dataloader.train.total_batch_size=4", "train.seed=0", f"train.output_dir={out}",
    ]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    records = _read_metrics(out / "metrics.json")
    losses = [r["total_loss"] for r in records if "total_loss" in r]
    aps = {r["iteration"]: r["bbox_ema/AP"] for r in records if "bbox_ema/AP" in r}
    assert len(losses) >= 3 and losses[-1] < losses[0], losses
    assert len(aps) == 2, aps  # periodic evaluation half-way and the final one
    first, last = sorted(aps)
    assert aps[last] > aps[first], aps
    assert (out / "model_final.pth").is_file()
