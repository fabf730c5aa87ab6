"""End-to-end runs of tools/train_net.py with the real tiny RT-DETR recipe on the embedded data.

Run as subprocesses (``tools`` is never imported). To keep the whole file within a few minutes on
2 CPU cores, the recipe is shrunk by overrides: 128 px input, no strong augmentation.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"
TRAIN_NET = str(REPO / "tools" / "train_net.py")
SMALL = [
    "dataloader.train.num_workers=0",
    "dataloader.train.stop_aug_epoch=0",
    "dataloader.train.mapper.image_size=[128,128]",
    "dataloader.test.mapper.image_size=[128,128]",
    "model.encoder.eval_spatial_size=[128,128]",
    "model.decoder.eval_spatial_size=[128,128]",
    "train.log_period=10",
]
pytestmark = pytest.mark.slow


def _run(args, timeout=600, check=True, threads=None):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, TRAIN_NET, "--config-file", RECIPE, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def _results(path):
    return json.load(open(path))["results"]


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 100-iteration run shared by the tests below (eval at 50 and at the end)."""
    out = tmp_path_factory.mktemp("e2e") / "train"
    t0 = time.time()
    _run([*SMALL, "train.max_iter=100", "train.eval_period=50", "train.checkpointer.period=50",
          f"train.output_dir={out}"])
    return out, time.time() - t0


def test_training_raises_ap_above_untrained(trained, tmp_path):
    out, _ = trained
    _run(["--eval-only", *SMALL, f"train.output_dir={tmp_path}"])  # fresh init, no checkpoint
    before = _results(tmp_path / "eval_only_results.json")["bbox_ema"]["AP"]
    after = _results(out / "eval_results.json")["bbox_ema"]["AP"]
    print(f"untrained AP={before:.3f} trained AP={after:.3f}")
    assert before < 1.0
    assert after > before + 5.0, (before, after)
    for f in ("config.yaml", "metrics.json", "model_final.pth", "model_best.pth", "log.txt"):
        assert (out / f).exists(), f
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
    log = (out / "log.txt").read_text()
    assert "1 epoch = 200 iterations" in log and "eta:" in log and "data_time" in log


def test_eval_only_reproduces_checkpoint_ap(trained, tmp_path):
    out, _ = trained
    _run(["--eval-only", *SMALL, f"train.init_checkpoint={out / 'model_final.pth'}", f"train.output_dir={tmp_path}"])
    again = _results(tmp_path / "eval_only_results.json")
    saved = _weights(out / "model_final.pth")["metrics"]
    assert again["bbox_ema"]["AP"] == pytest.approx(saved["bbox_ema/AP"], abs=1e-6)
    assert again["bbox_ema"]["AP50"] == pytest.approx(saved["bbox_ema/AP50"], abs=1e-6)


def test_two_process_cpu_training_and_sharded_eval_match_one_process(tmp_path):
    out2 = tmp_path / "np2"
    # batch 4 divides each rank's shard (100 images), so 1 and 2 processes see the same batches;
    # one thread per process in both runs, so float reductions match too.
    same = ["dataloader.test.batch_size=4"]
    _run(["--num-gpus", "2", *SMALL, *same, "train.max_iter=6", "train.eval_period=0",
          "train.checkpointer.period=0", f"train.output_dir={out2}"], threads=1)
    two = _results(out2 / "eval_results.json")
    log = (out2 / "log.txt").read_text()
    assert "with 2 process(es)" in log
    out1 = tmp_path / "np1"
    _run(["--eval-only", *SMALL, *same, f"train.init_checkpoint={out2 / 'model_final.pth'}",
          f"train.output_dir={out1}"], threads=1)
    one = _results(out1 / "eval_only_results.json")
    assert one["bbox_ema"]["AP"] == pytest.approx(two["bbox_ema"]["AP"], abs=1e-6)
    assert one["bbox_ema"]["AP50"] == pytest.approx(two["bbox_ema"]["AP50"], abs=1e-6)


def test_killed_run_resumes_to_identical_weights(tmp_path):
    common = [*SMALL, "train.max_iter=8", "train.eval_period=0", "train.checkpointer.period=3",
              "train.checkpointer.best_metric=null"]
    ref = tmp_path / "ref"
    _run([*common, f"train.output_dir={ref}"])
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, TRAIN_NET, "--config-file", RECIPE, *common, f"train.output_dir={cut}"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (cut / "model_0000005.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "model_final.pth").exists(), "run finished before it could be killed"
    _run(["--resume", *common, f"train.output_dir={cut}"])
    a, b = _weights(ref / "model_final.pth"), _weights(cut / "model_final.pth")
    for key in ("model",):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), k
    for k in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]), k


def test_unknown_override_key_and_class_mismatch_errors(tmp_path):
    p = _run(["train.max_iters=5", f"train.output_dir={tmp_path}"], check=False)
    assert p.returncode == 2
    assert "Unknown config key 'train.max_iters'" in p.stderr and "train.max_iter" in p.stderr
    p = _run([*SMALL, "model.num_classes=3", "train.max_iter=1", f"train.output_dir={tmp_path}"], check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "model.num_classes=3" in p.stderr and "have 5 classes" in p.stderr
    assert p.stderr.rstrip().endswith("model.num_classes=5")
