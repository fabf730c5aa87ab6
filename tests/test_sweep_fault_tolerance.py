"""Fault tolerance of real training runs (tiny recipe, CPU, deterministic):

* SIGKILL at a random iteration + ``--resume`` ends with the same weights, EMA, optimizer state
  and metrics as an uninterrupted run;
* preemption (SIGUSR2) of a ``tools/submit.py --local`` job: checkpoint, requeue, exact resume;
* a NaN loss stops the run naming the iteration and the loss terms, the last checkpoint intact;
* a process killed while writing a checkpoint never leaves a truncated one.
"""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sweep_utils import (
    REPO,
    assert_same_tensors,
    env,
    last_checkpoint_iter,
    load_state,
    run,
    tail,
    train_cmd,
    wait_for,
    write_recipe,
)

pytestmark = pytest.mark.slow

# checkpoint after every iteration, so that a kill at any iteration has something to resume from
EVERY_ITER = ["train.checkpointer.period=1"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return write_recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory):
    """An uninterrupted run (10 iterations + final evaluation)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = run(train_cmd(recipe, out, *EVERY_ITER), out.parent / "log.txt")
    assert proc.returncode == 0, tail(out.parent / "log.txt")
    return out


def _assert_same_final_state(out: Path, ref: Path):
    a, b = load_state(out / "model_final.pth"), load_state(ref / "model_final.pth")
    assert a["iteration"] == b["iteration"]
    assert_same_tensors(a["model"], b["model"], "model weights")
    assert_same_tensors(a["ema"]["module"], b["ema"]["module"], "EMA weights")
    opt_a, opt_b = a["trainer"]["optimizer"]["state"], b["trainer"]["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for k in opt_a:
        assert_same_tensors(opt_a[k], opt_b[k], f"optimizer state of param {k}")
    res_a = json.loads((out / "eval_results.json").read_text())
    res_b = json.loads((ref / "eval_results.json").read_text())
    assert res_a == res_b


def test_sigkill_at_random_iteration_then_resume_is_exact(recipe, reference, tmp_path):
    kill_after = random.randint(1, 7)  # checkpoint iteration after which the process is killed
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    with open(log, "ab") as f:
        proc = subprocess.Popen(train_cmd(recipe, out, *EVERY_ITER), stdout=f, stderr=subprocess.STDOUT,
                                env=env(), cwd=str(REPO))
    try:
        wait_for(lambda: (last_checkpoint_iter(out) or -1) >= kill_after, 240, proc,
                 f"checkpoint of iteration {kill_after}", log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = last_checkpoint_iter(out)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model_final.pth").exists(), f"run finished before the kill (k={kill_after})"
    resumed = run(train_cmd(recipe, out, *EVERY_ITER, resume=True), log)
    assert resumed.returncode == 0, tail(log)
    assert f"Resuming from {out}/model_{killed_at:07d}.pth" in log.read_text()
    _assert_same_final_state(out, reference)


def _children(pid: int):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def test_submit_local_preempted_job_requeues_and_resumes_exactly(recipe, reference, tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "submit.log"
    cmd = [sys.executable, "tools/submit.py", "--local", "--gpus-per-node", "0", "--wait",
           "--config-file", str(recipe), f"train.output_dir={out}", *EVERY_ITER]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env(), cwd=str(REPO),
                            text=True)
    lines = []
    job_id = None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Submitted job "):
            job_id = int(line.split()[2].rstrip(";"))
            break
    assert job_id is not None, "".join(lines)
    stop_after = random.randint(2, 7)
    wait_for(lambda: (last_checkpoint_iter(out) or -1) >= stop_after, 240, proc, "training progress",
             out / "log.txt")
    tasks = _children(job_id)
    assert len(tasks) == 1, tasks
    os.kill(tasks[0], signal.SIGUSR2)  # what Slurm sends --signal-delay-s before preemption
    rest, _ = proc.communicate(timeout=300)
    log.write_text("".join(lines) + rest)
    assert proc.returncode == 0, log.read_text() + tail(out / "log.txt")
    text = (out / "log.txt").read_text()
    assert "Stop requested: saved the checkpoint of iteration" in text
    assert "Resuming from" in text
    record = json.loads((out / "sweep_run.json").read_text())
    assert record["status"] == "finished" and record["attempt"] == 1
    _assert_same_final_state(out, reference)


def test_nan_loss_stops_run_naming_iteration_and_terms(recipe, tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    first = run(train_cmd(recipe, out, "train.max_iter=4", "train.checkpointer.period=2"), log)
    assert first.returncode == 0, tail(log)
    good = (out / "model_final.pth").read_bytes()
    # resume for 4 more iterations with a loss weight that makes loss_giou NaN
    proc = run(train_cmd(recipe, out, "train.max_iter=8", "model.criterion.weight_dict.loss_giou=nan",
                         resume=True), log)
    text = log.read_text()
    assert proc.returncode != 0
    start = load_state(out / "model_final.pth")["iteration"] + 1
    assert f"Non-finite loss at iteration {start}" in text, tail(log)
    msg = next(line for line in text.splitlines() if "Non-finite loss at iteration" in line)
    assert "loss_giou=nan" in msg and "loss_vfl=" in msg  # bad terms and all terms named
    # the last checkpoint is untouched and still the one to resume from
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert (out / "model_final.pth").read_bytes() == good
    assert not list(out.glob(f"model_{start:07d}.pth"))


SAVE_LOOP = textwrap.dedent('''
    import os, sys, torch
    from mlla_rtdetr.engine.checkpointer import Checkpointer
    os.makedirs(sys.argv[1], exist_ok=True)
    model = torch.nn.Linear(2048, 2048)  # 16 MB per checkpoint
    ck = Checkpointer(model, sys.argv[1])
    for i in range(1000000):
        with torch.no_grad():
            model.weight.fill_(float(i))
            model.bias.fill_(float(i))
        ck.save("model_final", iteration=i)
        print(i, flush=True)
''')


def test_kill_while_saving_never_leaves_truncated_checkpoint(tmp_path):
    """A process overwriting model_final.pth in a loop is SIGKILLed at random moments, most
    likely during a write: the file and last_checkpoint always name one complete checkpoint."""
    script = tmp_path / "save_loop.py"
    script.write_text(SAVE_LOOP)
    out = tmp_path / "ckpt"
    for round_ in range(2):
        proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env(), cwd=str(REPO), text=True)
        first = proc.stdout.readline()  # at least one complete save
        assert first.strip().isdigit(), first
        time.sleep(random.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert (out / "last_checkpoint").read_text() == "model_final.pth"
        state = torch.load(out / "model_final.pth", weights_only=True)
        value = float(state["iteration"])
        assert torch.equal(state["model"]["weight"], torch.full((2048, 2048), value)), f"round {round_}"
        assert torch.equal(state["model"]["bias"], torch.full((2048,), value))
