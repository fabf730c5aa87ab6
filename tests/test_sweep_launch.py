"""Launch helpers without a model: torchrun environment, Slurm options and sbatch script,
preemption hook, and a submitit local job that is preempted, requeued and resumed exactly."""
import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mlla_rtdetr.launch.distributed import torchrun_env
from mlla_rtdetr.launch.job import with_resume
from mlla_rtdetr.launch.slurm import ClusterOptions, parse_sbatch_options, parse_time, sbatch_script

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- torchrun env
def test_torchrun_env_absent_partial_and_complete():
    assert torchrun_env({}) is None
    with pytest.raises(ValueError, match="Incomplete distributed environment"):
        torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    full = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node0",
            "MASTER_PORT": "29500", "LOCAL_WORLD_SIZE": "2"}
    assert torchrun_env(full) == {"rank": 3, "world_size": 4, "local_rank": 1, "local_world_size": 2,
                                  "master_addr": "node0", "master_port": 29500}
    no_local = {k: v for k, v in full.items() if k != "LOCAL_WORLD_SIZE"}
    assert torchrun_env({**no_local, "NNODES": "2"})["local_world_size"] == 2
    assert torchrun_env(no_local)["local_world_size"] == 4
    with pytest.raises(ValueError, match="Inconsistent"):
        torchrun_env({**full, "RANK": "4"})
    with pytest.raises(ValueError, match="integers"):
        torchrun_env({**full, "MASTER_PORT": "http"})


# ----------------------------------------------------------------------------- slurm options
@pytest.mark.parametrize("text,minutes", [("90", 90), ("4h", 240), ("1.5h", 90), ("02:30:00", 150),
                                          ("30:00", 30), ("1-00", 1440), ("2-12:30", 3630), ("00:00:30", 1)])
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


def test_parse_time_rejects_garbage():
    with pytest.raises(ValueError, match="HH:MM:SS"):
        parse_time("soon")


def test_parse_sbatch_options():
    assert parse_sbatch_options(["qos=high", "--exclusive", "#SBATCH --mail_type=END"]) == {
        "qos": "high", "exclusive": True, "mail-type": "END"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_sbatch_options(["=x"])


def test_sbatch_script_has_resources_and_preemption_signal(tmp_path):
    opts = ClusterOptions(folder=tmp_path / "sub", nodes=2, gpus_per_node=8, partition="learn",
                          time_min=600, account="proj", cpus_per_task=10, mem_gb=400, signal_delay_s=90,
                          sbatch={"qos": "high", "constraint": "a100"}, setup=["module load cuda"])
    text = sbatch_script(opts, python="python")
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=learn", "#SBATCH --account=proj", "#SBATCH --time=600",
                 "#SBATCH --cpus-per-task=10", "#SBATCH --mem=400GB", "#SBATCH --signal=USR2@90",
                 "#SBATCH --qos=high", "#SBATCH --constraint=a100", "module load cuda",
                 "python -u -m submitit.core._submit"]:
        assert line in text, line
    cpu = sbatch_script(ClusterOptions(folder=tmp_path, gpus_per_node=0), python="python")
    assert "--ntasks-per-node=1" in cpu and "gpus-per-node" not in cpu


def test_submit_dry_run_cli(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("x = 1\n")
    proc = subprocess.run(
        [sys.executable, "tools/submit.py", "--config-file", str(cfg), "--nodes", "2", "--gpus-per-node", "4",
         "--time", "1-00:00", "--sbatch", "qos=low", "--dry-run", f"train.output_dir={tmp_path / 'o'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --nodes=2" in proc.stdout and "#SBATCH --time=1440" in proc.stdout
    assert "#SBATCH --qos=low" in proc.stdout and f"{tmp_path / 'o' / 'submitit'}" in proc.stdout
    bad = subprocess.run([sys.executable, "tools/submit.py", "--config-file", str(cfg), "--local", "--nodes", "2",
                          "train.output_dir=x"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--nodes 1" in bad.stderr
    no_out = subprocess.run([sys.executable, "tools/submit.py", "--config-file", str(cfg), "--dry-run"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert no_out.returncode == 2 and "pass train.output_dir=" in no_out.stderr


def test_with_resume_is_idempotent():
    assert with_resume(["--config-file", "a.py", "x.y=1"]) == ["--resume", "--config-file", "a.py", "x.y=1"]
    assert with_resume(["--resume", "a"]) == ["--resume", "a"]


# ----------------------------------------------------------------------------- preemption
# A training script with the interface of tools/train_net.py (default_argument_parser + main) whose
# "model" is a counter: each iteration adds 1 to a weight and appends the iteration to a log, so
# lost or repeated iterations are visible. It uses the real trainer base, checkpointer and hook.
FAKE_TRAIN_NET = textwrap.dedent('''
    import os, time
    import torch
    from detectron2.engine import TrainerBase
    from mlla_rtdetr.engine import default_argument_parser
    from mlla_rtdetr.engine.checkpointer import Checkpointer
    from mlla_rtdetr.engine.preemption import PreemptionHook

    MAX_ITER = 30

    def main(args):
        out = dict(o.split("=", 1) for o in args.opts)["train.output_dir"].strip("'")
        os.makedirs(out, exist_ok=True)
        model = torch.nn.Linear(2, 2, bias=False)
        torch.nn.init.zeros_(model.weight)

        class Counter(TrainerBase):
            def run_step(self):
                with torch.no_grad():
                    model.weight.add_(1.0)
                with open(os.path.join(out, "iterations.txt"), "a") as f:
                    f.write(f"{self.iter}\\n")
                time.sleep(0.1)

        trainer = Counter()
        checkpointer = Checkpointer(model, out, trainer=trainer)
        trainer.register_hooks([PreemptionHook(checkpointer)])
        start = 0
        if args.resume and checkpointer.has_checkpoint():
            checkpointer.load(checkpointer.get_checkpoint_file())
            start = trainer.iter + 1
        trainer.train(start, MAX_ITER)
        checkpointer.save("model_final", iteration=trainer.iter)
        return {"bbox": {"AP": float(model.weight[0, 0])}}
''')


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    yield
    from mlla_rtdetr.engine import preemption

    preemption.reset()
    preemption._State.previous.clear()
    for s, h in saved.items():
        signal.signal(s, h)


def test_preemption_hook_saves_iteration_and_exits(tmp_path, restore_signals):
    from detectron2.engine import TrainerBase

    from mlla_rtdetr.engine.checkpointer import Checkpointer
    from mlla_rtdetr.engine.preemption import PREEMPTED_EXIT_CODE, PreemptionHook

    model = torch.nn.Linear(2, 2, bias=False)
    torch.nn.init.zeros_(model.weight)
    seen = []

    class T(TrainerBase):
        def run_step(self):
            with torch.no_grad():
                model.weight.add_(1.0)
            seen.append(self.iter)
            if self.iter == 4:  # the signal arrives in the middle of iteration 4
                os.kill(os.getpid(), signal.SIGUSR1)

    trainer = T()
    trainer.register_hooks([PreemptionHook(Checkpointer(model, str(tmp_path), trainer=trainer))])
    with pytest.raises(SystemExit) as exc:
        trainer.train(0, 100)
    assert exc.value.code == PREEMPTED_EXIT_CODE
    assert seen == [0, 1, 2, 3, 4], "iteration 4 must complete, and no later one start"
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    ckpt = torch.load(tmp_path / "model_0000004.pth", weights_only=True)
    assert ckpt["iteration"] == 4 and ckpt["trainer"]["iteration"] == 4
    assert torch.equal(ckpt["model"]["weight"], torch.full((2, 2), 5.0))


def _task_pids(controller_pid: int):
    path = Path(f"/proc/{controller_pid}/task/{controller_pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except FileNotFoundError:
        return []


@pytest.mark.slow
def test_submitit_local_job_preempted_requeued_resumes_exactly(tmp_path):
    """SIGUSR2 (Slurm's preemption warning under submitit) mid-run: the job saves the current
    iteration, requeues itself with --resume and finishes with no iteration lost or repeated."""
    from mlla_rtdetr.launch.job import TrainJob
    from mlla_rtdetr.launch.slurm import make_executor
    from mlla_rtdetr.sweep.records import read_record, update_record

    script = tmp_path / "fake_train_net.py"
    script.write_text(FAKE_TRAIN_NET)
    out = tmp_path / "run"
    executor = make_executor(ClusterOptions(folder=tmp_path / "submitit", local=True, gpus_per_node=0,
                                            time_min=10))
    job = executor.submit(TrainJob(["--config-file", str(REPO / "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"), f"train.output_dir={out}"],
                                   script=str(script), on_status=functools.partial(update_record, str(out))))
    log = out / "iterations.txt"

    def iterations():
        return [int(x) for x in log.read_text().split()] if log.exists() else []

    t0 = time.time()
    while len(iterations()) < 5:
        assert time.time() - t0 < 120, f"job did not start: {job.stderr()}"
        assert job.state == "RUNNING", f"job ended early: {job.stderr()}"
        time.sleep(0.05)
    pids = _task_pids(int(job.job_id))
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGUSR2)
    result = job.result()  # waits for the requeued attempt

    its = iterations()
    assert its == list(range(30)), f"iterations lost or repeated: {its}"
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert torch.equal(final["model"]["weight"], torch.full((2, 2), 30.0))
    assert result == {"bbox/AP": 30.0}
    record = read_record(out)
    assert record["status"] == "finished" and record["attempt"] == 1
    stdout = job.stdout() or ""
    assert "Requeued job" in stdout or "Requeued job" in (job.stderr() or "")
    preempted_at = [p for p in out.glob("model_00000*.pth")]
    assert preempted_at, "the preemption checkpoint must exist"


@pytest.mark.slow
def test_sweep_slurm_backend_through_local_executor(tmp_path):
    """The sweep's Slurm backend (one submitit job per run, records written by the jobs), run by
    submitit's local executor with the counter script in place of train_net."""
    from mlla_rtdetr.launch.slurm import make_executor
    from mlla_rtdetr.sweep.backends import submit_slurm, train_argv
    from mlla_rtdetr.sweep.plan import expand_grid, parse_axis
    from mlla_rtdetr.sweep.records import is_finished, read_record

    script = tmp_path / "fake_train_net.py"
    script.write_text(FAKE_TRAIN_NET.replace("MAX_ITER = 30", "MAX_ITER = 3"))
    cfg = REPO / "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"  # checked before launch
    runs = expand_grid([str(cfg)], [parse_axis("train.seed=0,1")], tmp_path / "sweep")
    executor = make_executor(ClusterOptions(folder=tmp_path / "submitit", local=True, gpus_per_node=0))
    lines = []
    jobs = submit_slurm(runs, [train_argv(r) for r in runs], executor, sweep_name="s", echo=lines.append,
                        script=str(script))
    assert set(jobs) == {"seed=0", "seed=1"} and len(lines) == 2
    for run in runs:
        assert jobs[run.name].result() == {"bbox/AP": 3.0}
        record = read_record(run.output_dir)
        assert is_finished(run.output_dir) and record["swept"] == {"train.seed": run.name[-1]}
        assert record["sweep"] == "s" and record["argv"][:3] == ["--config-file", str(cfg), "--resume"]
        assert (run.output_dir / "iterations.txt").read_text().split() == ["0", "1", "2"]
