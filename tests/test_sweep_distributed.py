"""Multi-process training on CPU with gloo: two "machines" (two train_net process groups on
localhost joined by --num-machines/--machine-rank/--dist-url) and two torchrun "nodes" (torchrun's
RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT). Both give a world of 2 processes, one per
machine, with the same seeds, data shards and thread counts, so they must end with identical
weights."""
import json
import socket
import subprocess
import sys

import pytest

from sweep_utils import REPO, TRAIN_NET, assert_same_tensors, env, load_state, tail, write_recipe

pytestmark = pytest.mark.slow

OVERRIDES = ["train.max_iter=6"]


def dist_env():
    # Two "machines" share this host's cores and each sizes its thread pool for the whole host:
    # busy-waiting OpenMP threads would then starve each other (seconds per iteration).
    return {**env(), "OMP_WAIT_POLICY": "PASSIVE"}


def _run_two(commands, logs, timeout=300):
    procs = []
    for cmd, log in zip(commands, logs):
        with open(log, "wb") as f:
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=dist_env(), cwd=str(REPO)))
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], "\n".join(tail(log) for log in logs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return write_recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def two_machines(recipe, tmp_path_factory):
    """Machine rank 0 and 1, one process each, rendezvous over tcp://127.0.0.1:<port>."""
    out = tmp_path_factory.mktemp("two_machines") / "run"
    url = f"tcp://127.0.0.1:{_free_port()}"
    commands = [[sys.executable, str(TRAIN_NET), "--config-file", str(recipe), "--num-gpus", "1",
                 "--num-machines", "2", "--machine-rank", str(rank), "--dist-url", url,
                 f"train.output_dir={out}", *OVERRIDES] for rank in (0, 1)]
    _run_two(commands, [out.parent / f"machine{rank}.log" for rank in (0, 1)])
    return out


def test_two_machines_train_as_one_group(two_machines):
    log0 = (two_machines / "log.txt").read_text()
    log1 = (two_machines / "log.txt.rank1").read_text()
    assert "Rank of current process: 0. World size: 2" in log0
    assert "Rank of current process: 1. World size: 2" in log1
    assert "Training on cpu with 2 process(es)" in log0
    assert (two_machines / "model_final.pth").is_file()
    logged = [json.loads(x) for x in (two_machines / "metrics.json").read_text().splitlines()]
    assert [x["iteration"] for x in logged if "total_loss" in x] == list(range(6))


def test_torchrun_two_nodes_join_group_and_match_two_machines(recipe, two_machines, tmp_path):
    out = tmp_path / "run"
    port = _free_port()
    commands = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
                 "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                 str(TRAIN_NET), "--config-file", str(recipe), f"train.output_dir={out}", *OVERRIDES]
                for node in (0, 1)]
    _run_two(commands, [tmp_path / f"node{node}.log" for node in (0, 1)])
    assert "Rank of current process: 0. World size: 2" in (out / "log.txt").read_text()
    assert "Rank of current process: 1. World size: 2" in (out / "log.txt.rank1").read_text()
    a, b = load_state(out / "model_final.pth"), load_state(two_machines / "model_final.pth")
    assert_same_tensors(a["model"], b["model"], "torchrun vs two-machine weights")
    assert_same_tensors(a["ema"]["module"], b["ema"]["module"], "torchrun vs two-machine EMA")
