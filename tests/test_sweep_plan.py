"""Sweep planning: axis parsing, grid/list expansion, run names, skip logic, tools/sweep.py --dry-run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlla_rtdetr.sweep.plan import (
    CONFIG_AXIS,
    LabeledRun,
    expand_grid,
    expand_list,
    load_run_list,
    parse_axis,
    parse_run_line,
    short_keys,
    split_override,
)
from mlla_rtdetr.sweep.records import FINISHED, is_finished, read_record, update_record

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "base.py"
    path.write_text("train = dict(seed=0)\n")
    return str(path)


def test_parse_axis_values_and_grammar():
    assert parse_axis("model.encoder.attention=softmax,mlla").values == ("softmax", "mlla")
    assert parse_axis("train.seed=range(0,3)").values == ("0", "1", "2")
    assert parse_axis("model.x=[1,2],[3,4]").values == ("[1,2]", "[3,4]")
    single = parse_axis("optimizer.lr=1e-4")
    assert single.key == "optimizer.lr" and single.values == ("1e-4",)


@pytest.mark.parametrize("bad", ["seed", "=1,2", "1abc=3", "a.b=1,1"])
def test_parse_axis_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        parse_axis(bad)


def test_split_override_error_is_actionable():
    with pytest.raises(ValueError, match="dotted.key=value"):
        split_override("train.seed")


def test_short_keys_are_unique_suffixes():
    keys = ["model.encoder.attention", "train.seed", "optimizer.lr", "model.backbone.lr"]
    names = short_keys(keys)
    assert names["model.encoder.attention"] == "attention"
    assert names["train.seed"] == "seed"
    assert names["optimizer.lr"] == "optimizer.lr"
    assert names["model.backbone.lr"] == "backbone.lr"
    assert len(set(names.values())) == len(keys)


def test_grid_is_cartesian_product_in_order(cfg, tmp_path):
    axes = [parse_axis("model.encoder.attention=softmax,mlla"), parse_axis("train.seed=0,1,2")]
    runs = expand_grid([cfg], axes, tmp_path / "sweep", fixed=["train.max_iter=20"])
    assert [r.name for r in runs] == [
        "attention=softmax,seed=0", "attention=softmax,seed=1", "attention=softmax,seed=2",
        "attention=mlla,seed=0", "attention=mlla,seed=1", "attention=mlla,seed=2",
    ]
    r = runs[4]
    assert r.overrides == ["train.max_iter=20", "model.encoder.attention=mlla", "train.seed=1"]
    assert r.swept == {"model.encoder.attention": "mlla", "train.seed": "1"}
    assert r.output_dir == tmp_path / "sweep" / "attention=mlla,seed=1"
    assert len({r.output_dir for r in runs}) == 6


def test_single_value_axis_is_applied_but_not_named(cfg, tmp_path):
    runs = expand_grid([cfg], [parse_axis("train.seed=0,1"), parse_axis("train.max_iter=5")], tmp_path)
    assert [r.name for r in runs] == ["seed=0", "seed=1"]
    assert all("train.max_iter=5" in r.overrides for r in runs)


def test_several_configs_add_a_config_axis(tmp_path):
    a, b = tmp_path / "rtdetr_r18.py", tmp_path / "mlla_t.py"
    a.write_text("x=1\n")
    b.write_text("x=2\n")
    runs = expand_grid([str(a), str(b)], [parse_axis("train.seed=0,1")], tmp_path / "out")
    assert [r.name for r in runs] == [
        "config=rtdetr_r18,seed=0", "config=rtdetr_r18,seed=1", "config=mlla_t,seed=0", "config=mlla_t,seed=1",
    ]
    assert runs[2].config_file == str(b) and runs[2].swept[CONFIG_AXIS] == str(b)


def test_grid_errors(cfg, tmp_path):
    with pytest.raises(FileNotFoundError):
        expand_grid([str(tmp_path / "missing.py")], [], tmp_path)
    with pytest.raises(ValueError, match="more than once"):
        expand_grid([cfg], [parse_axis("a.b=1,2"), parse_axis("a.b=3,4")], tmp_path)
    with pytest.raises(ValueError, match="both fixed and swept"):
        expand_grid([cfg], [parse_axis("a.b=1,2")], tmp_path, fixed=["a.b=3"])
    # values that differ only in characters unsafe in paths would collide
    with pytest.raises(ValueError, match="share the output directory"):
        expand_grid([cfg], [parse_axis("a.b='x?y','x*y'")], tmp_path)


def test_list_runs_and_run_file(cfg, tmp_path):
    text = "# ablation\nmodel.encoder.attention=softmax\nmodel.encoder.attention=mlla train.seed=3  # mine\n"
    (tmp_path / "runs.txt").write_text(text)
    run_list = load_run_list(str(tmp_path / "runs.txt"))
    assert run_list == [["model.encoder.attention=softmax"], ["model.encoder.attention=mlla", "train.seed=3"]]
    runs = expand_list([cfg], run_list, tmp_path / "out", fixed=["train.max_iter=3"])
    assert [r.name for r in runs] == ["attention=softmax", "attention=mlla,seed=3"]
    assert runs[1].overrides == ["train.max_iter=3", "model.encoder.attention=mlla", "train.seed=3"]
    with pytest.raises(ValueError, match="twice"):
        expand_list([cfg], [["a.b=1", "a.b=2"]], tmp_path)


def test_labelled_run_list_times_grid(cfg, tmp_path):
    """'labels | overrides' lines: the labels name the runs (columns, directories), the overrides
    configure them; a list combines with grid axes (every run x every seed)."""
    text = ("# placements\nplacement=none |\n"
            "placement=fusion | model.encoder.fpn_fusion=mlla model.encoder.pan_fusion=mlla\n"
            "placement=hybrid | model.backbone.stage_blocks={res4:mlla,res5:mlla}  # a dict value\n")
    (tmp_path / "runs.txt").write_text(text)
    run_list = load_run_list(str(tmp_path / "runs.txt"))
    assert isinstance(run_list[0], LabeledRun) and run_list[0].overrides == ()
    runs = expand_list([cfg], run_list, tmp_path / "out", fixed=["train.max_iter=3"],
                       axes=[parse_axis("train.seed=0,1"), parse_axis("optimizer.lr=1e-3")])
    assert [r.name for r in runs] == ["placement=none,seed=0", "placement=none,seed=1", "placement=fusion,seed=0",
                                      "placement=fusion,seed=1", "placement=hybrid,seed=0", "placement=hybrid,seed=1"]
    assert runs[3].swept == {"placement": "fusion", "train.seed": "1"}
    assert runs[3].overrides == ["train.max_iter=3", "optimizer.lr=1e-3", "model.encoder.fpn_fusion=mlla",
                                 "model.encoder.pan_fusion=mlla", "train.seed=1"]
    assert runs[4].overrides[2] == "model.backbone.stage_blocks={res4:mlla,res5:mlla}"
    assert parse_run_line("a.b=1 c.d=2") == ["a.b=1", "c.d=2"]  # unlabelled lines are unchanged
    with pytest.raises(ValueError, match="repeats a label"):
        parse_run_line("x=1 x=2 | a.b=1")
    with pytest.raises(ValueError, match="also a grid axis"):
        expand_list([cfg], [parse_run_line("x=1 | train.seed=3")], tmp_path, axes=[parse_axis("train.seed=0,1")])
    proc = _sweep("--config-file", cfg, "--runs-file", str(tmp_path / "runs.txt"), "--set", "train.seed=0,1,2",
                  "--output-dir", str(tmp_path / "sweep"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "Sweep plan: 9 run(s)" in proc.stdout and f"{tmp_path / 'sweep'}/placement=hybrid,seed=2" in proc.stdout


def test_run_record_and_finished(tmp_path):
    assert not is_finished(tmp_path)
    update_record(tmp_path, name="x", status="running")
    assert not is_finished(tmp_path)
    update_record(tmp_path, status=FINISHED, returncode=0)
    rec = read_record(tmp_path)
    assert rec["name"] == "x" and rec["status"] == FINISHED and is_finished(tmp_path)
    assert not list(tmp_path.glob(".sweep_run.json.*")), "temporary files must not remain"


def _sweep(*args, cwd=REPO):
    return subprocess.run([sys.executable, "tools/sweep.py", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_sweep_dry_run_prints_plan_and_skips_finished(cfg, tmp_path):
    out = tmp_path / "sweep"
    update_record(out / "attention=mlla,seed=0", status=FINISHED)
    proc = _sweep("--config-file", cfg, "--set", "model.encoder.attention=softmax,mlla",
                  "--set", "train.seed=0,1", "--output-dir", str(out), "--dry-run", "train.max_iter=20")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Sweep plan: 4 run(s)" in text
    assert text.count("status:    to run") == 3 and text.count("finished: skip") == 1
    assert "1 finished run(s) skipped, 3 to run" in text
    assert f"output:    {out}/attention=softmax,seed=1" in text and "train.output_dir=" in text
    assert "tools/train_net.py --config-file" in text and "--resume" in text
    # a dry run writes nothing
    assert not (out / "sweep.json").exists()
    assert not (out / "attention=softmax,seed=0").exists()


def test_sweep_slurm_dry_run_prints_sbatch(cfg, tmp_path):
    proc = _sweep("--config-file", cfg, "--set", "train.seed=0,1", "--output-dir", str(tmp_path / "s"),
                  "--backend", "slurm", "--nodes", "2", "--gpus-per-node", "4", "--partition", "p1",
                  "--time", "2:00:00", "--dry-run", "--print-sbatch")
    assert proc.returncode == 0, proc.stderr
    for line in ["#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=p1", "#SBATCH --time=120", "#SBATCH --signal=USR2@120"]:
        assert line in proc.stdout


def test_sweep_reports_bad_input(cfg, tmp_path):
    proc = _sweep("--config-file", cfg, "--set", "seed", "--dry-run")
    assert proc.returncode == 2 and "dotted.key=value" in proc.stderr
    proc = _sweep("--config-file", str(tmp_path / "nope.py"), "--dry-run")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = _sweep("--config-file", cfg, "--set", "a.b=1,2", "--run", "a.b=3", "--dry-run")
    assert proc.returncode == 2 and "also a grid axis" in proc.stderr
    proc = _sweep("--config-file", cfg, "--run", "| a.b=3", "--dry-run")
    assert proc.returncode == 2 and "nothing left of '|'" in proc.stderr


def test_train_argv_quotes_output_dir_for_the_override_grammar(cfg, tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mlla_rtdetr.sweep.backends import train_argv

    run = expand_grid([cfg], [parse_axis("train.seed=0,1")], tmp_path / "s")[1]
    argv = train_argv(run, num_gpus=2)
    assert argv[:7] == ["--config-file", cfg, "--resume", "--num-gpus", "2", "--dist-url", "auto"]
    assert argv[7:-1] == ["train.seed=1"]
    parsed = OverridesParser.create().parse_overrides(argv[7:])
    assert parsed[-1].value() == str(tmp_path / "s" / "seed=1")


def test_local_backend_runs_commands_and_records(cfg, tmp_path):
    """The parallel local backend with a trivial command in place of train_net."""
    from mlla_rtdetr.sweep.backends import run_local

    runs = expand_grid([cfg], [parse_axis("train.seed=0,1,2")], tmp_path)
    script = "import os,sys; open(sys.argv[1],'w').write(os.environ.get('OMP_NUM_THREADS','')); sys.exit(int(sys.argv[2]))"
    commands = [[sys.executable, "-c", script, str(r.output_dir / "ran.txt"), "1" if i == 1 else "0"]
                for i, r in enumerate(runs)]
    lines = []
    codes = run_local(runs, commands, jobs=2, echo=lines.append, poll_s=0.05)
    assert codes == {"seed=0": 0, "seed=1": 1, "seed=2": 0}
    assert all((r.output_dir / "ran.txt").exists() for r in runs)
    assert [read_record(r.output_dir)["status"] for r in runs] == ["finished", "failed", "finished"]
    rec = read_record(runs[0].output_dir)
    assert rec["swept"] == {"train.seed": "0"} and rec["returncode"] == 0 and rec["command"] == commands[0]
    assert any("failed" in line and "seed=1" in line for line in lines)
    assert json.loads((runs[1].output_dir / "sweep_run.json").read_text())["returncode"] == 1
