"""The tiny DEIM recipe (``deim_rtdetr_tiny_synthetic.py``) trained by tools/train_net.py in a
subprocess: Dense O2O data in a worker process (Mosaic, MixUp, multi-scale), the flat-cosine
schedule and the EMA restart, DEIM's MAL loss, evaluation and checkpoints, on 24 images of the embedded dataset
(3 iterations per epoch, the policy squeezed into 3 epochs)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data_utils import synthetic_val_subset

REPO = Path(__file__).resolve().parents[1]
RECIPE = "projects/mlla_rtdetr/configs/deim_rtdetr_tiny_synthetic.py"
pytestmark = pytest.mark.slow


def test_tiny_deim_recipe_trains_with_every_stage_and_the_ema_restart(tmp_path):
    json_file, image_root = synthetic_val_subset(tmp_path, 24)
    out = tmp_path / "run"
    data = [f"json_file={json_file}", f"image_root={image_root}", "names=deim_e2e_mini"]
    args = [
        *[f"dataloader.train.dataset.{d}" for d in data], *[f"dataloader.test.dataset.{d}" for d in data],
        "dataloader.train.num_workers=1",
        "dataloader.train.mapper.policy_epochs=[0,1,2]",  # Mosaic + MixUp / strong / none + restart
        "dataloader.train.batch_augment.mixup_epochs=[0,1]",
        "dataloader.train.batch_augment.mixup_prob=1.0",
        "dataloader.train.mapper.mosaic_prob=1.0",
        "dataloader.train.mapper.image_size=[128,128]", "dataloader.test.mapper.image_size=[128,128]",
        "model.encoder.eval_spatial_size=[128,128]", "model.decoder.eval_spatial_size=[128,128]",
        "dataloader.train.mapper.mosaic_output_size=64", "dataloader.train.batch_augment.multiscale_sizes=[96,128,160]",
        "lr_multiplier.warmup=2", "train.epochs=3", "train.log_period=1", f"train.output_dir={out}",
    ]
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", RECIPE, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    log = (out / "log.txt").read_text()
    assert "1 epoch = 3 iterations" in log and "DenseO2OBatchAugment(mixup_prob=1.0" in log
    assert "EMA restart at iteration 6" in log and "restored from" in log
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    lrs = {m["iteration"]: m["lr"] for m in metrics if "lr" in m}
    # flat-cosine: quadratic warm-up (0 at iteration 0), flat at 1e-3 until epoch 1, lr_gamma 0.5 from epoch 2
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(1e-3) and lrs[7] == pytest.approx(5e-4)
    assert all(m["total_loss"] == m["total_loss"] for m in metrics if "total_loss" in m)  # finite
    # DEIM's model side: the MAL loss instead of VFL, on the decoder, auxiliary, encoder and denoising outputs
    losses = {k for m in metrics for k in m if k.startswith("loss_")}
    assert {"loss_mal", "loss_mal_aux_0", "loss_mal_enc_0", "loss_mal_dn_0"} <= losses
    assert not any("vfl" in k for k in losses)
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    best = torch.load(out / "model_best.pth", map_location="cpu", weights_only=True)
    # restored at iteration 6 from the best of iterations 2 / 5, then 3 more EMA updates
    assert final["ema"]["updates"] == best["ema"]["updates"] + 3 or best["trainer"]["iteration"] == 8
    assert "bbox_ema" in json.load(open(out / "eval_results.json"))["results"]
