"""tools/run_demo.py (``make demo``) and its plotting helpers (mlla_rtdetr.utils.plots).

The end-to-end test trains the demo recipe for a few iterations in a subprocess and checks every
promised output; the others check argument errors and the plots without training.
"""
import glob
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RUN_DEMO = REPO / "tools" / "run_demo.py"


def _load_run_demo():
    spec = importlib.util.spec_from_file_location("run_demo_under_test", RUN_DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path):
    """(width, height) from the IHDR chunk; fails if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-iter", "0"], "--max-iter must be positive"),
        (["--num-vis", "-1"], "--num-vis must be >= 0"),
        (["train.seed"], "key=value"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    run_demo = _load_run_demo()
    with pytest.raises(SystemExit) as e:
        run_demo.parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_arguments_and_overrides_pass_through():
    run_demo = _load_run_demo()
    args = run_demo.parse_args(["--output-dir", "x", "--max-iter", "5", "--check-ap50", "50",
                                "train.seed=3", "optimizer.lr=2e-3"])
    assert (args.output_dir, args.max_iter, args.check_ap50) == ("x", 5, 50.0)
    assert args.opts == ["train.seed=3", "optimizer.lr=2e-3"]
    assert run_demo.parse_args([]).check_ap50 is None  # default: report only


def test_unknown_override_key_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RUN_DEMO), "--output-dir", str(tmp_path / "out"), "train.max_itre=3"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "max_itre" in proc.stderr and "max_iter" in proc.stderr


def test_demo_recipe_uses_mlla_backbone_and_mlla_encoder():
    from mlla_rtdetr.engine import load_config

    cfg = load_config(str(REPO / "projects/mlla_rtdetr/configs/mlla_rtdetr_demo_synthetic.py"))
    assert cfg.model.backbone._target_.__name__ == "MLLABackbone"
    assert list(cfg.model.encoder.attention) == ["mlla"]
    assert cfg.dataloader.train.dataset.names == "synthetic_shapes_train"
    assert cfg.dataloader.test.dataset.names == "synthetic_shapes_val"
    assert cfg.train.device == "cpu" and cfg.train.seed == 42


# ----------------------------------------------------------------------------- plots
def _records():
    recs = []
    for it in range(0, 100, 10):
        recs.append({"iteration": it, "total_loss": 20.0 / (1 + it), "loss_vfl": 1.0, "loss_bbox": 0.5,
                     "loss_giou": 0.4, "lr": 1e-3, "time": 0.1})
    recs[4].update({"bbox/AP": 20.0, "bbox/AP50": 40.0, "bbox_ema/AP": 18.0, "bbox_ema/AP50": 35.0})
    recs[9].update({"bbox/AP": 50.0, "bbox/AP50": 70.0, "bbox_ema/AP": 52.0, "bbox_ema/AP50": 72.0})
    return recs


def test_read_metrics_json_merges_and_sorts(tmp_path):
    from mlla_rtdetr.utils.plots import metric_series, read_metrics_json

    path = tmp_path / "metrics.json"
    lines = [{"iteration": 19, "total_loss": 2.0}, {"iteration": 9, "total_loss": 3.0},
             {"iteration": 19, "bbox/AP50": 61.5}, {"no_iteration": 1}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    recs = read_metrics_json(str(path))
    assert [r["iteration"] for r in recs] == [9, 19]
    assert recs[1] == {"iteration": 19, "total_loss": 2.0, "bbox/AP50": 61.5}
    it, val = metric_series(recs, "bbox/AP50")
    assert it.tolist() == [19] and val.tolist() == [61.5]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metrics_json(str(tmp_path / "missing.json"))
    path.write_text('{"iteration": 1}\n{broken\n')
    with pytest.raises(ValueError, match=r"metrics.json:2"):
        read_metrics_json(str(path))


def test_plot_training_curves_writes_a_png(tmp_path):
    from mlla_rtdetr.utils.plots import plot_training_curves

    path = plot_training_curves(_records(), str(tmp_path / "curves.png"), title="t")
    w, h = _png_size(path)
    assert (w, h) == (1080, 304)  # 13.5 x 3.8 in at 80 dpi
    assert 5_000 < os.path.getsize(path) < 300_000


def test_draw_gt_and_predictions_colours_and_threshold():
    from mlla_rtdetr.utils.plots import GT_COLOR, PRED_COLOR, draw_gt_and_predictions

    image = np.full((64, 64, 3), 90, np.uint8)
    gt = torch.tensor([[8.0, 8.0, 30.0, 30.0]])
    pred = torch.tensor([[34.0, 34.0, 60.0, 60.0], [2.0, 40.0, 20.0, 60.0]])
    out = draw_gt_and_predictions(image, gt, torch.tensor([1]), pred, torch.tensor([0.9, 0.2]),
                                  torch.tensor([0, 2]), ["circle", "rectangle", "triangle"],
                                  score_threshold=0.5, scale=2.0)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert (image == 90).all()  # the input is not modified
    assert (out[16, 16:60] == GT_COLOR).all(axis=-1).any()  # top edge of the GT box (x2)
    assert (out[100:120, 68] == PRED_COLOR).all(axis=-1).any()  # left edge of the kept prediction
    # The prediction below the threshold is not drawn: its left edge (x = 4) stays background.
    assert not (out[90:118, 4] == PRED_COLOR).all(axis=-1).any()
    with pytest.raises(ValueError, match="uint8"):
        draw_gt_and_predictions(image.astype(np.float32), gt, torch.tensor([1]), pred,
                                torch.tensor([0.9, 0.2]), torch.tensor([0, 2]))


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.numerics
def test_run_demo_end_to_end_writes_every_promised_file(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(RUN_DEMO), "--output-dir", str(out), "--max-iter", "12", "--num-vis", "2",
           # An unreachable threshold: exit status 1 after writing everything.
           "--check-ap50", "101", "train.model_ema.eval_raw=False", "train.log_period=4"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FAILED: bbox_ema AP50" in proc.stderr
    assert "MLLA-RT-DETR demo summary" in proc.stdout
    assert "eta:" in proc.stdout + proc.stderr  # the training log with ETA

    summary = json.loads((out / "summary.json").read_text())
    assert summary["max_iter"] == 12 and summary["task"] == "bbox_ema" and summary["passed"] is False
    m = summary["metrics"]
    for key in ("AP", "AP50", "AP75"):
        assert 0.0 <= m[key] <= 100.0
    assert m["AP50"] >= m["AP"] - 1e-9
    assert summary["wall_s"] >= summary["train_and_eval_s"] > 0
    assert summary["median_s_per_iter"] > 0 and summary["dataset_s"] >= 0

    assert (out / "config.yaml").is_file() and "max_iter: 12" in (out / "config.yaml").read_text()
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert "model" in ckpt and "ema" in ckpt
    assert len(glob.glob(str(out / "events.out.tfevents.*"))) == 1
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    assert [r["iteration"] for r in records if "total_loss" in r] == [3, 7, 11]
    assert all(math.isfinite(r["total_loss"]) for r in records if "total_loss" in r)
    final = [r for r in records if "bbox_ema/AP50" in r]
    assert final and final[-1]["bbox_ema/AP50"] == pytest.approx(m["AP50"])

    w, h = _png_size(out / "training_curves.png")
    assert w > 600 and h > 200 and 5_000 < (out / "training_curves.png").stat().st_size < 300_000
    vis = sorted((out / "val_predictions").glob("val_*.png"))
    assert len(vis) == 2 and summary["val_pngs"] == [f"val_predictions/{p.name}" for p in vis]
    for p in vis:
        assert _png_size(p) == (512, 512)  # 256 px val images drawn at 2x
        assert 2_000 < p.stat().st_size < 600_000
    listed = set(summary["files"])
    assert {"config.yaml", "model_final.pth", "metrics.json", "training_curves.png", "summary.json"} <= listed
