"""End to end, as the model zoo README runs the study "Does DEIM converge faster?": the photo-paste
set written to disk by tools/make_shapes_dataset.py, both arms (the tiny RT-DETR with the RT-DETRv2
recipe and with DEIM's) trained by tools/sweep.py from the study's sweep file, then
tools/collect_results.py --each-eval prints AP at each evaluation point, mean ± std over seeds.
Scaled down: 24 + 8 images of 96 px, 14 iterations (DEIM's stage epochs of 3 iterations: all four
stages and the EMA restart occur), 2 seeds, the photos line of the sweep file."""
import json
import subprocess
import sys

import pytest

from sweep_utils import REPO, env, tail

CONFIGS = [str(REPO / "projects" / "mlla_rtdetr" / "configs" / f"deim_convergence_{arm}.py") for arm in ("rtdetrv2", "deim")]
SWEEP_FILE = REPO / "projects" / "mlla_rtdetr" / "configs" / "sweeps" / "deim_convergence.txt"


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.json").read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_both_recipes_train_on_the_photo_set_and_collect_results_prints_mean_std(tmp_path):
    make = subprocess.run([sys.executable, str(REPO / "tools" / "make_shapes_dataset.py"), "--kind", "photos",
                           "--output", "data/photo_paste", "--num-train", "24", "--num-val", "8", "--image-size", "96"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert make.returncode == 0, make.stderr[-3000:]
    assert "train: 24 images" in make.stdout and "face, flower, pagoda, ribbons" in make.stdout
    # the sweep file's photos line, its data paths (relative to the repository, where runs start)
    # pointed at this set
    lines = [x for x in SWEEP_FILE.read_text().splitlines() if x.startswith(("data=shapes", "data=photos"))]
    assert [x.split("|")[0].strip() for x in lines] == ["data=shapes", "data=photos"]
    assert lines[1].count("=data/photo_paste/") == 4
    runs_file = tmp_path / "photos.txt"
    runs_file.write_text(lines[1].replace("=data/photo_paste/", f"={tmp_path}/data/photo_paste/") + "\n")

    root = tmp_path / "study"
    sweep = [sys.executable, str(REPO / "tools" / "sweep.py"), "--config-file", *CONFIGS, "--runs-file", str(runs_file),
             "--set", "train.seed=0,1", "--output-dir", str(root), "--jobs", "2",
             "train.max_iter=14", "train.eval_period=7", "train.checkpointer.period=7", "train.log_period=1",
             "lr_multiplier.warmup=2", "train.model_ema.warmups=5", "dataloader.test.batch_size=8"]
    proc = subprocess.run(sweep, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    logs = "\n".join(tail(p) for p in root.glob("*/stdout.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr + logs
    names = [f"config=deim_convergence_{arm},data=photos,seed={s}" for arm in ("rtdetrv2", "deim") for s in (0, 1)]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    for name in names:
        run = root / name
        metrics = _metrics(run)
        evals = [m["iteration"] for m in metrics if "bbox_ema/AP" in m]
        assert evals == [6, 14], (name, evals)  # the same evaluation points in both arms (7 and 14 trained)
        losses = {k for m in metrics for k in m if k.startswith("loss_")}
        log = (run / "log.txt").read_text()
        assert "1 epoch = 3 iterations" in log or "epochs of 3 iterations" in log, name
        if name.startswith("config=deim_convergence_deim,"):
            assert "loss_mal" in losses and not any("vfl" in k for k in losses)
            assert "EMA restart at iteration 9" in log, name  # policy_epochs[2] = 3 epochs
        else:
            assert "loss_vfl" in losses and not any("mal" in k for k in losses)

    table = subprocess.run([sys.executable, str(REPO / "tools" / "collect_results.py"), str(root), "--each-eval",
                            "--no-params"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr[-3000:]
    out = table.stdout
    assert "| config | data | iterations | seeds | AP | AP50 |" in out, out
    for arm in ("rtdetrv2", "deim"):
        for point in (7, 14):
            row = next((x for x in out.splitlines() if x.startswith(f"| deim_convergence_{arm} | photos | {point} | 2 |")),
                       None)
            assert row is not None, out
            assert row.count(" ± ") >= 2, row  # AP and AP50 at least: mean ± std over the 2 seeds
