"""Result reading and paper tables, on fabricated run directories (no training)."""
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mlla_rtdetr.sweep.records import FINISHED, SWEEP_MANIFEST, update_record, write_json_atomic
from mlla_rtdetr.sweep.results import collect, find_eval_metrics, read_run
from mlla_rtdetr.sweep.table import per_run_table, seed_table, to_csv, to_markdown

REPO = Path(__file__).resolve().parents[1]

# (attention, seed) -> AP; other metrics derived from it
APS = {("softmax", "0"): 30.0, ("softmax", "1"): 32.0, ("mlla", "0"): 35.0, ("mlla", "1"): 36.0}


def _metrics_lines(ap, task="bbox", iteration=39):
    lines = [{"iteration": 9, "total_loss": 3.0, "data_time": 0.01, "time": 0.2}]
    lines.append({"iteration": 19, f"{task}/AP": ap - 5, f"{task}/AP50": ap + 5})  # an earlier eval
    lines.append({
        "iteration": iteration, f"{task}/AP": ap, f"{task}/AP50": ap + 20, f"{task}/AP75": ap - 2,
        f"{task}/APs": ap / 2, f"{task}/APm": ap, f"{task}/APl": ap * 1.5, f"{task}/AP-circle": 1.0,
    })
    return "\n".join(json.dumps(x) for x in lines) + "\n"


def make_sweep(root: Path, with_stats=True, task="bbox_ema"):
    runs = []
    for (att, seed), ap in APS.items():
        name = f"attention={att},seed={seed}"
        d = root / name
        update_record(d, name=name, status=FINISHED, config_file="cfg.py",
                      overrides=[f"model.encoder.attention={att}", f"train.seed={seed}"],
                      swept={"model.encoder.attention": att, "train.seed": seed})
        (d / "metrics.json").write_text(_metrics_lines(ap, task))
        if with_stats:
            params = 20_100_000 if att == "softmax" else 19_500_000
            write_json_atomic(d / "model_stats.json", {"params": params, "gflops": 60.0 if att == "softmax" else 58.5,
                                                      "latency_ms": 4.5 if att == "softmax" else 4.9})
        runs.append({"name": name, "output_dir": str(d)})
    write_json_atomic(root / SWEEP_MANIFEST, {"runs": runs})
    return root


def test_find_eval_metrics_prefers_ema_and_last_eval():
    entries = [{"iteration": 5, "bbox/AP": 1.0}, {"iteration": 9, "bbox/AP": 2.0, "bbox_ema/AP": 3.0},
               {"iteration": 10, "total_loss": 1.0}]
    metrics, it, task = find_eval_metrics(entries)
    assert (metrics, it, task) == ({"AP": 3.0}, 9, "bbox_ema")
    assert find_eval_metrics(entries, task="bbox")[:2] == ({"AP": 2.0}, 9)
    assert find_eval_metrics([{"iteration": 1, "loss": 2}]) == ({}, None, None)


def test_read_run_tolerates_truncated_metrics_line(tmp_path):
    (tmp_path / "metrics.json").write_text(_metrics_lines(40.0) + '{"iteration": 59, "bbox/A')
    r = read_run(tmp_path)
    assert r.metrics["AP"] == 40.0 and r.metrics["APl"] == 60.0 and r.iteration == 39
    assert r.task == "bbox" and r.status == "unknown" and r.swept == {}


def test_collect_follows_manifest_order(tmp_path):
    make_sweep(tmp_path)
    # a stray run dir not in the manifest comes after the manifest's runs
    (tmp_path / "aaa_extra").mkdir()
    (tmp_path / "aaa_extra" / "metrics.json").write_text(_metrics_lines(1.0))
    results = collect([tmp_path])
    assert [r.name for r in results] == [f"attention={a},seed={s}" for a, s in APS] + ["aaa_extra"]
    assert results[0].task == "bbox_ema" and results[0].stats["params"] == 20_100_000


def test_per_run_table_markdown_bold_best(tmp_path):
    results = collect([make_sweep(tmp_path)])
    table = per_run_table(results)
    assert table.key_headers == ["attention", "seed"]
    md = to_markdown(table)
    lines = md.splitlines()
    assert lines[0] == ("| attention | seed | AP | AP50 | AP75 | APs | APm | APl | Params (M) | GFLOPs |"
                        " Latency (ms) |")
    # best AP row (mlla seed 1) bold in every metric column; lowest params/GFLOPs are mlla, lowest latency softmax
    assert lines[5] == ("| mlla | 1 | **36.0** | **56.0** | **34.0** | **18.0** | **36.0** | **54.0** |"
                        " **19.50** | **58.5** | 4.90 |")
    assert lines[2] == "| softmax | 0 | 30.0 | 50.0 | 28.0 | 15.0 | 30.0 | 45.0 | 20.10 | 60.0 | **4.50** |"
    assert md.count("**19.50**") == 2 and md.count("**4.50**") == 2


def test_seed_table_mean_std(tmp_path):
    results = collect([make_sweep(tmp_path)])
    table = seed_table(results)
    assert table.key_headers == ["attention", "seeds"]
    assert table.keys == [["softmax", "2"], ["mlla", "2"]]
    ap = [row[0] for row in table.cells]
    assert ap[0].mean == pytest.approx(31.0) and ap[0].std == pytest.approx(math.sqrt(2.0))
    assert ap[1].mean == pytest.approx(35.5) and ap[1].std == pytest.approx(math.sqrt(0.5))
    md = to_markdown(table)
    assert "| softmax | 2 | 31.0 ± 1.4 |" in md
    assert "| mlla | 2 | **35.5 ± 0.7** |" in md
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows[0][:4] == ["attention", "seeds", "AP", "AP std"]
    assert float(rows[2][2]) == pytest.approx(35.5) and float(rows[2][3]) == pytest.approx(math.sqrt(0.5))


def test_seed_table_at_every_evaluation_point(tmp_path):
    """--each-eval: a row per (swept values, evaluation point), mean ± std over seeds at each."""
    from mlla_rtdetr.sweep.results import per_evaluation

    make_sweep(tmp_path)
    for (att, seed), ap in APS.items():  # as train_net logs: steps 0..39, an evaluation after step 19 and after training
        lines = _metrics_lines(ap, "bbox_ema", iteration=40) + json.dumps({"iteration": 39, "total_loss": 2.0}) + "\n"
        (tmp_path / f"attention={att},seed={seed}" / "metrics.json").write_text(lines)
    results = per_evaluation(collect([tmp_path]))
    assert [r.swept["iterations"] for r in results] == ["20", "40"] * 4  # iterations trained at each evaluation
    table = seed_table(results)
    assert table.key_headers == ["attention", "iterations", "seeds"]
    assert table.keys == [["softmax", "20", "2"], ["softmax", "40", "2"], ["mlla", "20", "2"], ["mlla", "40", "2"]]
    ap, ap50 = [row[0] for row in table.cells], [row[1] for row in table.cells]
    assert [c.mean for c in ap] == pytest.approx([26.0, 31.0, 30.5, 35.5])  # the earlier eval: AP - 5
    assert ap[0].std == pytest.approx(math.sqrt(2.0)) and ap50[0].mean == pytest.approx(36.0)
    assert [c.n for c in ap] == [2, 2, 2, 2]


def test_no_seed_axis_gives_no_seed_table(tmp_path):
    d = tmp_path / "r"
    update_record(d, name="r", status=FINISHED, swept={"model.encoder.attention": "mlla"})
    (d / "metrics.json").write_text(_metrics_lines(10.0))
    results = collect([tmp_path])
    assert seed_table(results) is None
    table = per_run_table(results)
    # columns nobody has (params, GFLOPs, latency) are left out; a single row has nothing bold
    assert [c.header for c in table.columns] == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert "**" not in to_markdown(table)


def test_collect_results_cli_writes_md_and_csv(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    # one unfinished run without evaluation: reported, left out of the table
    update_record(root / "attention=linear,seed=0", name="attention=linear,seed=0", status="running",
                  swept={"model.encoder.attention": "linear", "train.seed": "0"})
    proc = subprocess.run([sys.executable, "tools/collect_results.py", str(root), "--no-params"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "attention=linear,seed=0: no evaluation results yet (status: running)" in proc.stderr
    assert "## Per run (4 runs; metrics: bbox_ema)" in proc.stdout
    assert "## Mean ± std over seeds" in proc.stdout
    md = (root / "results.md").read_text()
    assert md.strip() == proc.stdout.split("Wrote ")[0].strip()
    rows = list(csv.DictReader(io.StringIO((root / "results.csv").read_text())))
    assert len(rows) == 4 and rows[3]["attention"] == "mlla" and float(rows[3]["AP"]) == 36.0
    assert float(rows[0]["Params (M)"]) == pytest.approx(20.1)
    seeds = list(csv.DictReader(io.StringIO((root / "results_seeds.csv").read_text())))
    assert [r["attention"] for r in seeds] == ["softmax", "mlla"]


def test_collect_results_cli_errors(tmp_path):
    tool = [sys.executable, "tools/collect_results.py"]
    proc = subprocess.run(tool + [str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run(tool + [str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "no run directories" in proc.stderr


def test_eval_results_json_fallback(tmp_path):
    """A run directory with only train_net's eval_results.json (e.g. metrics.json deleted)."""
    d = tmp_path / "run"
    write_json_atomic(d / "eval_results.json", {"iteration": 99, "results": {
        "bbox": {"AP": 10.0, "AP50": 20.0}, "bbox_ema": {"AP": 12.0, "AP50": 25.0, "AP-circle": 3.0}}})
    r = read_run(d)
    assert r.metrics == {"AP": 12.0, "AP50": 25.0} and r.task == "bbox_ema" and r.iteration == 99
    assert [x.run_dir for x in collect([tmp_path])] == [d]


def test_ties_are_not_bold_and_small_values_keep_two_digits(tmp_path):
    for i, (ap, gflops) in enumerate([(0.0, 0.0721), (0.0, 0.0751)]):
        d = tmp_path / f"r{i}"
        update_record(d, name=f"r{i}", status=FINISHED, swept={"train.seed": str(i)})
        (d / "metrics.json").write_text(json.dumps({"iteration": 8, "bbox/AP": ap}) + "\n")
        write_json_atomic(d / "model_stats.json", {"gflops": gflops})
    md = to_markdown(per_run_table(collect([tmp_path])))
    # AP ties (0.0 everywhere): nothing bold; GFLOPs: the lower one, shown with 2 significant digits
    assert "| 0 | 0.0 | **0.072** |" in md and "| 1 | 0.0 | 0.075 |" in md and md.count("**") == 2
    # values equal once rounded for display are a tie as well
    write_json_atomic(tmp_path / "r1" / "model_stats.json", {"gflops": 0.0723})
    assert "**" not in to_markdown(per_run_table(collect([tmp_path])))


def test_model_stats_accepts_analyze_model_report(tmp_path):
    """tools/analyze_model.py --output <run_dir>/model_stats.json works as a stats source."""
    from mlla_rtdetr.sweep.records import merge_model_stats, read_model_stats

    report = {"config_file": "c.py", "params": {"total": 1234, "trainable": 1000, "per_module": {}},
              "flops": {"input_size": [640, 640], "gflops": 60.5, "gmacs": 30.25}}
    write_json_atomic(tmp_path / "model_stats.json", report)
    assert read_model_stats(tmp_path)["params"] == 1234 and read_model_stats(tmp_path)["gflops"] == 60.5
    merge_model_stats(tmp_path, {"latency_ms": 4.2})
    raw = json.loads((tmp_path / "model_stats.json").read_text())
    assert raw["params"]["per_module"] == {} and raw["latency_ms"] == 4.2  # nothing of the report lost


@pytest.mark.parametrize("config", ["rtdetr_tiny_synthetic.py", "mlla_rtdetr_tiny_synthetic.py"])
def test_count_params_builds_on_meta_and_counts_the_real_model(config):
    """count_params builds on the meta device only (no CPU fallback): the RT-DETR decoder's
    anchors and MLLA's drop-path rates are computed on the CPU whatever the default device."""
    import torch
    from detectron2.config import instantiate

    from mlla_rtdetr.config import instantiate_on_meta
    from mlla_rtdetr.engine import load_config
    from mlla_rtdetr.sweep.model_stats import count_params

    cfg = load_config(config)
    meta_model = instantiate_on_meta(cfg.model)
    assert {p.device.type for p in meta_model.parameters()} == {"meta"}
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    n = count_params(cfg)
    assert torch.equal(torch.rand(3), expected)  # the global RNG is left as it was
    assert n == sum(p.numel() for p in instantiate(cfg.model).parameters())
