"""End to end: a 2x2 sweep (intra-scale attention x seed) of short real training runs on the
embedded dataset, then the paper table."""
import csv
import io
import json
import subprocess
import sys

import pytest

from sweep_utils import REPO, env, tail, write_recipe

pytestmark = pytest.mark.slow


def test_sweep_2x2_then_table(tmp_path):
    recipe = write_recipe(tmp_path)
    root = tmp_path / "sweep"
    sweep = [sys.executable, "tools/sweep.py", "--config-file", str(recipe),
             "--set", "model.encoder.attention=softmax,mlla", "--set", "train.seed=0,1",
             "--output-dir", str(root), "--jobs", "2", "train.max_iter=8"]
    proc = subprocess.run(sweep, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    logs = "\n".join(tail(p) for p in root.glob("*/stdout.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    names = ["attention=softmax,seed=0", "attention=softmax,seed=1", "attention=mlla,seed=0", "attention=mlla,seed=1"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    for name in names:
        run_dir = root / name
        record = json.loads((run_dir / "sweep_run.json").read_text())
        assert record["status"] == "finished" and record["returncode"] == 0
        attention, seed = name.split(",")
        assert record["swept"] == {"model.encoder.attention": attention.split("=")[1], "train.seed": seed.split("=")[1]}
        # the run really used the swept values
        config = (run_dir / "config.yaml").read_text()
        assert f"attention: {attention.split('=')[1]}" in config and f"seed: {seed.split('=')[1]}" in config
        assert (run_dir / "model_final.pth").is_file()
        lines = [json.loads(x) for x in (run_dir / "metrics.json").read_text().splitlines()]
        # throughput: every logged iteration reports its data loading time, and (after the
        # timer's 3 warm-up iterations) the whole step time next to it
        train_lines = [x for x in lines if "total_loss" in x]
        assert len(train_lines) == 8 and all("data_time" in x for x in train_lines)
        assert all("time" in x and x["time"] > x["data_time"] for x in train_lines if x["iteration"] >= 3)
        assert any("bbox_ema/AP" in x for x in lines)
    seed0 = json.loads((root / names[0] / "metrics.json").read_text().splitlines()[0])
    seed1 = json.loads((root / names[1] / "metrics.json").read_text().splitlines()[0])
    assert seed0["total_loss"] != seed1["total_loss"], "different seeds must give different runs"

    # a second sweep skips the finished runs
    again = subprocess.run(sweep, cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "4 finished run(s) skipped, 0 to run" in again.stdout

    # the table, with GFLOPs counted by fvcore (--analyze) at the recipe's 128 px
    table = subprocess.run([sys.executable, "tools/collect_results.py", str(root), "--analyze"], cwd=REPO,
                           env=env(), capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr
    md = (root / "results.md").read_text()
    assert "| attention | seed | AP | AP50 | AP75 |" in md and "| Params (M) | GFLOPs |" in md
    assert "| attention | seeds | AP |" in md
    rows = list(csv.DictReader(io.StringIO((root / "results.csv").read_text())))
    assert [(r["attention"], r["seed"]) for r in rows] == [("softmax", "0"), ("softmax", "1"), ("mlla", "0"), ("mlla", "1")]
    for row, name in zip(rows, names):
        final = [json.loads(x) for x in (root / name / "metrics.json").read_text().splitlines()
                 if "bbox_ema/AP" in x][-1]
        assert float(row["AP"]) == pytest.approx(final["bbox_ema/AP"])
        assert float(row["AP50"]) == pytest.approx(final["bbox_ema/AP50"])
        stats = json.loads((root / name / "model_stats.json").read_text())
        assert stats["gflops_input_size"] == [128, 128] and stats["gflops"] > 0
        assert float(row["Params (M)"]) == pytest.approx(stats["params"] / 1e6)
    # params counted from each run's config match the trainer's own count in its log
    for row, name in zip(rows, names):
        log = (root / name / "log.txt").read_text()
        logged = float(log.split("Model RTDETR: ")[1].split(" M parameters")[0])
        assert float(row["Params (M)"]) == pytest.approx(logged, abs=0.005)
    assert rows[0]["Params (M)"] != rows[2]["Params (M)"], "softmax and mlla blocks differ in size"
    seeds = list(csv.DictReader(io.StringIO((root / "results_seeds.csv").read_text())))
    assert [(r["attention"], r["seeds"]) for r in seeds] == [("softmax", "2"), ("mlla", "2")]
    mean = (float(rows[0]["AP"]) + float(rows[1]["AP"])) / 2
    assert float(seeds[0]["AP"]) == pytest.approx(mean)
