"""A user's mistake ends a tool with one message naming the tool, exit status 2 and no traceback,
also when it surfaces inside spawned training processes; internal errors keep their traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from mlla_rtdetr.errors import ConfigError, run_main

REPO = Path(__file__).resolve().parents[1]
TINY = "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"


def _run(tool, *args, timeout=300):
    return subprocess.run([sys.executable, f"tools/{tool}", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _assert_user_error(proc, tool, *fragments):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count(f"{tool}: error:") == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr[-3000:]


MISSPELT_CONFIG = ("Config file 'rtdetr_tiny_synthetc.py' does not exist",
                   f"Did you mean {TINY}?")
UNKNOWN_KEY = ("Unknown config key 'train.max_iters'", "train.max_iter")


@pytest.mark.parametrize("tool, args, expected", [
    ("train_net.py", ["--config-file", "rtdetr_tiny_synthetc.py"], MISSPELT_CONFIG),
    ("train_net.py", ["--config-file", TINY, "--num-gpus", "2", "train.max_iters=5"], UNKNOWN_KEY),
    ("analyze_model.py", ["--config-file", "rtdetr_tiny_synthetc.py"], MISSPELT_CONFIG),
    ("analyze_model.py", ["--config-file", TINY, "--checkpoint", "absent.pth"],
     ("Checkpoint 'absent.pth' does not exist",)),
    ("export_onnx.py", ["--config-file", TINY, "--output", "unused.onnx", "train.max_iters=5"], UNKNOWN_KEY),
    ("visualize_data.py", ["--config-file", TINY, "--output-dir", "unused", "dataloader.train.total_batchsize=2"],
     ("Unknown config key 'dataloader.train.total_batchsize'", "dataloader.train.total_batch_size")),
    ("sweep.py", ["--config-file", "rtdetr_tiny_synthetc.py", "--set", "train.seed=0,1", "--dry-run"],
     MISSPELT_CONFIG),
])
def test_tool_reports_user_error_once_with_status_2(tool, args, expected):
    _assert_user_error(_run(tool, *args), tool, *expected)


@pytest.mark.slow
def test_user_error_inside_spawned_processes_is_one_message(tmp_path):
    """With 2 training processes the class-count check runs before they start (and again in each):
    the run ends with status 2 and the message once, naming the override to add."""
    proc = _run("train_net.py", "--config-file", TINY, "--num-gpus", "2", "train.device=cpu",
                "model.num_classes=3", f"train.output_dir={tmp_path}", timeout=600)
    _assert_user_error(proc, "train_net.py", "model.num_classes=3,", "have 5 classes (circle, rectangle",
                       "Add this override:\n  model.num_classes=5")


def test_run_main_status_and_internal_errors(capsys):
    assert run_main(lambda: 3, prog="t") == 3
    assert run_main(lambda: {"results": 1}, prog="t") == 0

    def bad_config():
        raise ConfigError("set x to 1")

    assert run_main(bad_config, prog="tool.py") == 2
    assert capsys.readouterr().err == "tool.py: error: set x to 1\n"

    def bug():
        raise KeyError("internal")

    with pytest.raises(KeyError):
        run_main(bug, prog="t")


def _config_error_on_rank_1():
    from detectron2.utils import comm

    if comm.get_rank() == 1:
        raise ConfigError("rank 1 cannot use this config")
    comm.synchronize()


def _bug():
    raise RuntimeError("an internal error")


@pytest.mark.slow
def test_launcher_raises_a_workers_user_error_in_the_launching_process():
    from mlla_rtdetr.launch import launch

    with pytest.raises(ConfigError, match="^rank 1 cannot use this config$"):
        launch(_config_error_on_rank_1, 2, backend="gloo")
    with pytest.raises(Exception, match="(?s)Traceback.*RuntimeError: an internal error"):
        launch(_bug, 2, backend="gloo")
