"""End to end, as the model zoo README runs it: the placement study's sweep file through
tools/sweep.py (every placement trains through tools/train_net.py, and its loss falls), then
tools/collect_results.py --analyze --latency makes the table. Scaled down: 20 iterations of the
study recipe on a small copy of the embedded dataset, one seed."""
import csv
import io
import json
import subprocess
import sys

import pytest
import yaml

from sweep_utils import DATASET_KNOBS, REPO, env, tail


SWEEP_FILE = REPO / "projects" / "mlla_rtdetr" / "configs" / "sweeps" / "placements.txt"
PLACEMENTS = ["none", "intra_s5", "intra_s4s5", "fusion", "hybrid", "attention", "hybrid+intra_s5",
              "hybrid+intra_s4s5"]

RECIPE = '''"""Test recipe: the placement study's base recipe on 64 + 16 synthetic images."""
from mlla_rtdetr.config import get_config
from mlla_rtdetr.data.datasets import register_synthetic_shapes

register_synthetic_shapes("sweeptest_shapes", **{knobs!r})
_base = get_config("placement_study_synthetic.py")
model, optimizer, lr_multiplier, train = _base.model, _base.optimizer, _base.lr_multiplier, _base.train
dataloader = _base.dataloader
dataloader.train.dataset.names = "sweeptest_shapes_train"
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "sweeptest_shapes_val"
'''


def _losses(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.json").read_text().splitlines() if x.strip()]
    return [x["total_loss"] for x in lines if "total_loss" in x]


@pytest.mark.slow
def test_placement_sweep_file_trains_every_placement_and_makes_the_table(tmp_path):
    from mlla_rtdetr.data.datasets import SyntheticShapesConfig, ensure_synthetic_shapes

    ensure_synthetic_shapes(SyntheticShapesConfig(**DATASET_KNOBS))
    recipe = tmp_path / "study_recipe.py"
    recipe.write_text(RECIPE.format(knobs=DATASET_KNOBS))
    root = tmp_path / "placements"
    sweep = [sys.executable, "tools/sweep.py", "--config-file", str(recipe), "--runs-file", str(SWEEP_FILE),
             "--set", "train.seed=0", "--output-dir", str(root), "--jobs", "2",
             "train.max_iter=20", "lr_multiplier.warmup=4", "train.log_period=4", "train.model_ema.warmups=5",
             "dataloader.train.total_batch_size=4", "train.checkpointer.period=1000"]
    proc = subprocess.run(sweep, cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    logs = "\n".join(tail(p) for p in root.glob("*/stdout.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr + logs
    names = [f"placement={p}" for p in PLACEMENTS]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    configs = {}
    for name in names:
        record = json.loads((root / name / "sweep_run.json").read_text())
        assert record["status"] == "finished" and record["swept"] == {"placement": name.split("=")[1]}
        losses = _losses(root / name)
        assert len(losses) == 5 and losses[-1] < losses[0], (name, losses)
        configs[name.split("=")[1]] = yaml.safe_load((root / name / "config.yaml").read_text())["model"]
    # each run trained the placement its line names (resolved configs written by train_net)
    enc = {k: (v["encoder"]["attention"], v["encoder"]["use_encoder_idx"]) for k, v in configs.items()}
    assert enc["none"] == ("softmax", [2]) and enc["intra_s5"] == ("mlla", [2]) and enc["intra_s4s5"] == ("mlla", [1, 2])
    assert configs["fusion"]["encoder"]["fpn_fusion"] == configs["fusion"]["encoder"]["pan_fusion"] == {
        "name": "mlla", "num_layers": 1}
    assert configs["hybrid"]["backbone"]["stage_blocks"] == {s: {"name": "mlla", "depth": 1} for s in ("res4", "res5")}
    assert configs["attention"]["backbone"]["insert_after"] == {"res4": "mlla_attention", "res5": "mlla_attention"}
    for k in ("hybrid+intra_s5", "hybrid+intra_s4s5"):
        assert configs[k]["backbone"]["stage_blocks"] == configs["hybrid"]["backbone"]["stage_blocks"]
    assert enc["hybrid+intra_s5"] == enc["intra_s5"] and enc["hybrid+intra_s4s5"] == enc["intra_s4s5"]
    for k in ("none", "intra_s5", "intra_s4s5"):
        assert not {"fpn_fusion", "pan_fusion"} & set(configs[k]["encoder"])
        assert not {"stage_blocks", "insert_after"} & set(configs[k]["backbone"])

    table = subprocess.run([sys.executable, "tools/collect_results.py", str(root), "--analyze", "--latency",
                            "--latency-iters", "2", "--threads", "1"],
                           cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stderr[-3000:]
    md = (root / "results.md").read_text()
    assert "| placement | AP | AP50 | AP75 |" in md and "| Params (M) | GFLOPs | Latency (ms) |" in md
    rows = list(csv.DictReader(io.StringIO((root / "results.csv").read_text())))
    assert [r["placement"] for r in rows] == PLACEMENTS
    stats = {r["placement"]: json.loads((root / f"placement={r['placement']}" / "model_stats.json").read_text())
             for r in rows}
    for placement, s in stats.items():
        assert s["gflops"] > 0 and s["latency_ms"] > 0 and s["latency_setup"]["input_size"] == [128, 128]
        assert "interleaved with 7 other model(s)" in s["latency_setup"]["method"]
    for placement in PLACEMENTS[1:]:  # every placement changes the model
        assert stats[placement]["params"] != stats["none"]["params"], placement
        assert stats[placement]["gflops"] != stats["none"]["gflops"], placement


def test_the_sweep_file_runs_the_study_at_coco_scale(tmp_path):
    """The README's cluster command (dry run: the plan) and every line's overrides on the COCO
    R18 recipe build the placement they name."""
    from detectron2.config import instantiate

    from mlla_rtdetr.modeling.backbone.mlla_stages import MLLAMapStage
    from mlla_rtdetr.modeling.encoder.mlla_intra_scale import MLLAIntraScale
    from mlla_rtdetr.sweep.plan import load_run_list
    from mlla_rtdetr.engine import load_config

    coco = REPO / "projects" / "mlla_rtdetr" / "configs" / "rtdetrv2_r18vd_120e_coco.py"
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--config-file", str(coco), "--runs-file", str(SWEEP_FILE),
         "--set", "train.seed=0,1,2", "--output-dir", str(tmp_path / "placements_coco"), "--backend", "slurm",
         "--nodes", "1", "--gpus-per-node", "8", "--partition", "gpu", "--time", "24:00:00", "--dry-run"],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Sweep plan: 24 run(s)" in proc.stdout and "24 to run (slurm backend)" in proc.stdout
    assert f"{tmp_path / 'placements_coco'}/placement=hybrid,seed=2" in proc.stdout

    runs = {dict(r.labels)["placement"]: list(r.overrides) for r in load_run_list(str(SWEEP_FILE))}
    assert list(runs) == PLACEMENTS
    for placement, overrides in runs.items():
        parts = placement.split("+")
        model = load_config(str(coco), overrides).model
        backbone, encoder = instantiate(model.backbone), instantiate(model.encoder)
        mlla_encoder = [isinstance(b, MLLAIntraScale) for b in encoder.encoder]
        mlla_fusion = [isinstance(b.bottlenecks, MLLAIntraScale) for b in list(encoder.fpn_blocks) + list(encoder.pan_blocks)]
        mlla_stages = [isinstance(s, MLLAMapStage) for s in backbone.stage_modules()]
        found = {"intra": mlla_encoder, "fusion": mlla_fusion, "stages": mlla_stages, "after": list(backbone.after_stage)}
        intra = [p for p in parts if p.startswith("intra")]
        expected = {"intra": {"intra_s5": [True], "intra_s4s5": [True, True]}[intra[0]] if intra else [False],
                    "fusion": ["fusion" in parts] * 4,
                    "stages": [False, False] + ["hybrid" in parts] * 2,
                    "after": ["res4", "res5"] if "attention" in parts else []}
        assert found == expected, placement


DEIM_SWEEPS = {  # DEIM recipe -> its placement sweep file (D-FINE's CSP-ELAN encoder has its own fusion line)
    "deim_rtdetrv2_r18vd_120e_coco.py": SWEEP_FILE,
    "deim_dfine_hgnetv2_s_coco.py": SWEEP_FILE.with_name("placements_dfine.txt"),
}


@pytest.mark.parametrize("recipe", sorted(DEIM_SWEEPS))
def test_the_sweep_files_expand_on_the_deim_recipes(recipe, tmp_path):
    """The study on DEIM-RT-DETRv2-S and DEIM-D-FINE-S: the sweep (every line x 3 seeds) expands on
    the recipe, and every run's config builds (meta device) the placement its label names, with the
    recipe's own fusion block kept (CSP layer / CSP-ELAN) and the seed of its directory."""
    from mlla_rtdetr.config import config_path, instantiate_on_meta
    from mlla_rtdetr.engine import load_config
    from mlla_rtdetr.sweep.plan import expand_list, load_run_list, parse_axis
    from mlla_utils import expected_places, mlla_places

    lines = load_run_list(str(DEIM_SWEEPS[recipe]))
    assert [dict(r.labels)["placement"] for r in lines] == PLACEMENTS
    runs = expand_list([str(config_path(recipe))], lines, tmp_path, axes=[parse_axis("train.seed=0,1,2")])
    assert len(runs) == 3 * len(PLACEMENTS)
    fusion = None
    built = {}
    for run in runs:
        cfg = load_config(run.config_file, run.overrides)
        assert cfg.train.seed == int(run.swept["train.seed"])
        placement = run.swept["placement"]
        if placement not in built:  # the seeds share the model
            built[placement] = instantiate_on_meta(cfg.model)
        model = built[placement]
        assert {p.device.type for p in model.parameters()} == {"meta"}
        assert mlla_places(model) == expected_places(placement), run.name
        fusion = fusion or type(model.encoder.fpn_blocks[0])
        assert [type(b) for b in list(model.encoder.fpn_blocks) + list(model.encoder.pan_blocks)] == [fusion] * 4
