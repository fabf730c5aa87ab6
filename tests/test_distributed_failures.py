"""A failure on one rank stops every rank at the same iteration, with one message naming the rank
and the cause, whatever started the processes: ``tools/train_net.py --num-gpus 2`` (spawned, gloo
on CPU) and two processes started as torchrun starts them (``RANK``/``WORLD_SIZE``/... set).

Rank 1 fails at iteration 2 of the real tiny recipe (a model written to disk wraps it): an error in
its losses, an error at the start of its forward pass (the other rank then waits in a SyncBN
collective that rank 1 never joins), a non-finite loss, or an image it cannot read (with
``max_bad_image_share=0``). Also:
two processes resumed from a checkpoint end with the weights of the uninterrupted run.
"""
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "tools" / "train_net.py"
FAIL_AT = 2
SMALL = [
    "dataloader.train.num_workers=0",
    "dataloader.train.stop_aug_epoch=0",
    "dataloader.train.mapper.image_size=[96,96]",
    "dataloader.test.mapper.image_size=[96,96]",
    "model.encoder.eval_spatial_size=[96,96]",
    "model.decoder.eval_spatial_size=[96,96]",
    "train.log_period=1",
    "train.eval_period=0",
    "train.checkpointer.best_metric=null",
]
pytestmark = pytest.mark.slow

FAULTY = textwrap.dedent('''
    """The tiny recipe with a rank that fails at one iteration (tests/test_distributed_failures.py)."""
    import torch
    from detectron2.utils import comm

    from mlla_rtdetr.data.mapper import RTDETRDatasetMapper
    from mlla_rtdetr.modeling.meta_arch import RTDETR


    def _failing_now(fail_rank, fail_at, counter):
        return comm.get_rank() == fail_rank and counter == fail_at


    class FaultyRTDETR(RTDETR):
        def __init__(self, *args, fail="", fail_rank=1, fail_at=2, **kwargs):
            super().__init__(*args, **kwargs)
            self.fail, self.fail_rank, self.fail_at, self.step = fail, fail_rank, fail_at, 0

        def forward(self, batched_inputs):
            if self.training and self.fail == "early" and _failing_now(self.fail_rank, self.fail_at, self.step):
                # before the forward's collectives (SyncBN, the box count): the other rank waits in one
                raise RuntimeError("injected error before the forward's collectives")
            losses = super().forward(batched_inputs)
            if self.training:
                now, self.step = _failing_now(self.fail_rank, self.fail_at, self.step), self.step + 1
                if now and self.fail == "error":
                    raise RuntimeError("injected error in the losses")
                if now and self.fail == "nonfinite":
                    losses = dict(losses, loss_giou=losses["loss_giou"] * float("nan"))
            return losses


    class FaultyMapper(RTDETRDatasetMapper):
        """Rank ``fail_rank`` cannot read the first image of iteration ``fail_at``."""

        def __init__(self, *args, fail=False, fail_rank=1, fail_at=2, images_per_rank=2, **kwargs):
            super().__init__(*args, **kwargs)
            self.fail, self.fail_rank, self.calls = fail, fail_rank, 0
            self.fail_call = fail_at * images_per_rank

        def __call__(self, record, *args, **kwargs):
            now, self.calls = _failing_now(self.fail_rank, self.fail_call, self.calls), self.calls + 1
            if self.fail and now:
                raise OSError(f"cannot identify image file '{record['file_name']}'")
            return super().__call__(record, *args, **kwargs)
''')

RECIPE = textwrap.dedent('''
    from mlla_rtdetr.config import get_config

    _tiny = get_config("rtdetr_tiny_synthetic.py")
    model, dataloader, optimizer, lr_multiplier, train = (_tiny.model, _tiny.dataloader, _tiny.optimizer,
                                                          _tiny.lr_multiplier, _tiny.train)
    model._target_ = "faulty.FaultyRTDETR"
    model.fail = ""
    dataloader.train.mapper._target_ = "faulty.FaultyMapper"
    dataloader.train.mapper.fail = False
    dataloader.train.total_batch_size = 4
    dataloader.train.mapper.images_per_rank = 2
    train.max_iter = 6
''')


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("faulty")
    (d / "faulty.py").write_text(FAULTY)
    (d / "faulty_recipe.py").write_text(RECIPE)
    return d / "faulty_recipe.py"


def _env(recipe, **extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(recipe.parent), env.get("PYTHONPATH", "")])
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(recipe, out, *overrides, flags=(), timeout=300):
    return subprocess.run([sys.executable, str(TRAIN_NET), "--config-file", str(recipe), "--num-gpus", "2", *flags,
                           *SMALL, f"train.output_dir={out}", *overrides], cwd=REPO, env=_env(recipe),
                          capture_output=True, text=True, timeout=timeout)


def _stopped_at(out: Path, rank: int) -> str:
    log = (out / ("log.txt" if rank == 0 else f"log.txt.rank{rank}")).read_text()
    lines = [x for x in log.splitlines() if "Training stopped" in x or "DataError" in x]
    assert lines, log[-3000:]
    return lines[-1]


EARLY = (f"Training stopped at iteration {FAIL_AT} on all 2 processes: rank 1 failed in the forward pass or the "
         "losses (RuntimeError: injected error before the forward's collectives)")
NONFINITE = (f"Training stopped at iteration {FAIL_AT} on all 2 processes: rank 1 failed with a non-finite loss "
             "(non-finite loss terms {'loss_giou': nan}")


# (the non-finite loss runs torchrun-style below: each run costs ~10 s of process start-up)
@pytest.mark.parametrize("fail, expected_status, expected", [
    ("model.fail=error", 1, f"Training stopped at iteration {FAIL_AT} on all 2 processes: rank 1 failed in the "
                            "forward pass or the losses (RuntimeError: injected error in the losses)"),
    ("model.fail=early", 1, EARLY),
    ("dataloader.train.mapper.fail=True", 2, "cannot be read, more than dataloader.train.max_bad_image_share=0.0"),
])
def test_spawned_rank_failure_stops_every_rank_with_one_message(recipe, tmp_path, fail, expected_status, expected):
    out = tmp_path / "run"
    proc = _spawned(recipe, out, fail, "dataloader.train.max_bad_image_share=0", "train.checkpointer.period=1")
    err = proc.stderr
    assert proc.returncode == expected_status, err[-4000:]
    assert err.count("train_net.py: error:") == 1 and expected in err, err[-4000:]
    assert "ProcessRaisedException" not in err and "ProcessExitedException" not in err, err[-4000:]
    assert not (out / "model_final.pth").exists()
    if expected_status == 2:  # the unreadable image: every rank saved and stopped after iteration 2
        assert "iteration 2 is saved" in err and (out / "model_0000002.pth").exists()
        assert "Rank 1 skips an image that cannot be read" in (out / "log.txt").read_text()
    else:  # the failed step was skipped on every rank: the checkpoint of iteration 1 is the last
        assert (out / "last_checkpoint").read_text().strip() == "model_0000001.pth"
        for rank in (0, 1):
            assert f"iteration {FAIL_AT} on all 2 processes: rank 1 failed" in _stopped_at(out, rank)
        # the failing rank's log keeps the traceback of an exception, the other rank's only the message
        assert "Traceback" in (out / "log.txt.rank1").read_text()
        assert "Traceback" not in (out / "log.txt").read_text()


@pytest.mark.parametrize("fail, expected", [("model.fail=nonfinite", NONFINITE), ("model.fail=early", EARLY)])
def test_torchrun_style_rank_failure_stops_both_processes(recipe, tmp_path, fail, expected):
    """Processes started by torchrun / srun (nothing tears the others down): each ends by itself at
    the same iteration, status 1, with the same message; also when rank 0 is left waiting in a
    collective of the forward pass."""
    out = tmp_path / "run"
    port = str(_free_port())
    procs = [subprocess.Popen(
        [sys.executable, str(TRAIN_NET), "--config-file", str(recipe), *SMALL, f"train.output_dir={out}",
         fail, "train.checkpointer.period=1"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=_env(recipe, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for rank in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 1, err[-4000:]
        assert err.count("train_net.py: error:") == 1 and expected in err, err[-4000:]
        assert "Traceback" not in err, err[-4000:]
    for rank in (0, 1):
        assert f"iteration {FAIL_AT} on all 2 processes: rank 1 failed" in _stopped_at(out, rank)
    assert (out / "last_checkpoint").read_text().strip() == "model_0000001.pth"


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_processes_resumed_from_a_checkpoint_equal_the_uninterrupted_run(recipe, tmp_path):
    full = tmp_path / "full"
    proc = _spawned(recipe, full, "train.checkpointer.period=3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(full / "model_0000002.pth", resumed / "model_0000002.pth")
    (resumed / "last_checkpoint").write_text("model_0000002.pth")
    proc = _spawned(recipe, resumed, "train.checkpointer.period=3", flags=["--resume"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Resuming from" in (resumed / "log.txt").read_text()
    a, b = _weights(full / "model_final.pth"), _weights(resumed / "model_final.pth")
    for k in a["model"]:  # same processes, threads and CPU: the same sums in the same order
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]), k
