"""tools/benchmark.py and tools/analyze_model.py on the tiny config: JSON keys, positive numbers,
consistent counts (speed itself is never asserted)."""
import json
import sys
import subprocess

import pytest
import torch

from mlla_rtdetr.utils.timing import TimingStats, measure, measure_peak_memory
from tools_utils import MLLA_TINY_CONFIG, REPO_ROOT, TINY_CONFIG, load_tool, write_fake_official


@pytest.fixture(scope="module")
def bench():
    return load_tool("benchmark")


def _positive(row, *keys):
    for k in keys:
        assert isinstance(row[k], (int, float)) and row[k] > 0, (k, row[k])


def test_measure_counts_calls_and_reports_medians():
    calls = []
    stats = measure(lambda: calls.append(1), warmup=2, iters=5)
    assert len(calls) == 7 and len(stats.times_ms) == 5
    s = TimingStats([3.0, 1.0, 2.0, 10.0, 4.0])
    assert s.median == 3.0 and s.min == 1.0 and s.as_dict()["p90_ms"] == 10.0


def test_peak_memory_sees_a_large_allocation():
    # In a fresh process, as tools/benchmark.py measures each case: a long-lived process (pytest)
    # can serve the buffer from memory it already holds, so its RSS need not grow.
    code = ("import json, torch; from mlla_rtdetr.utils.timing import measure_peak_memory; "
            "print(json.dumps(measure_peak_memory(lambda: torch.ones(64 * 2**20 // 4).sum())))")  # 64 MiB
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    mem = json.loads(out.strip().splitlines()[-1])
    assert 48 <= mem["peak_mb"] < 1024, mem


def test_inference_and_train_step_json(bench, tmp_path):
    out = tmp_path / "inf.json"
    bench.main(["inference", "--config-file", TINY_CONFIG, "--input-sizes", "96", "--batch-sizes", "1", "2",
                "--deploy", "both", "--warmup", "0", "--iters", "1", "--no-memory", "--threads", "2",
                "--output", str(out)])
    data = json.loads(out.read_text())
    assert data["mode"] == "inference" and {"environment", "settings", "rows"} <= set(data)
    rows = data["rows"]
    assert [(r["batch_size"], r["deploy"]) for r in rows] == [(1, False), (1, True), (2, False), (2, True)]
    for r in rows:
        _positive(r, "median_ms", "per_image_ms", "throughput_img_s", "params", "speedup_vs_plain")
        assert r["per_image_ms"] == pytest.approx(r["median_ms"] / r["batch_size"])
        assert r["timing"]["iters"] == 1
    assert rows[0]["speedup_vs_plain"] == 1.0
    assert rows[1]["params"] < rows[0]["params"]  # RepVGG folding removes the 1x1 branches

    # Several configs are interleaved; ratios against the first; overrides after the configs apply to all.
    out = tmp_path / "two.json"
    # (run as the README's speed-table command is run)
    _run_tool(["inference", "--config-file", TINY_CONFIG, MLLA_TINY_CONFIG, "model.num_top_queries=10",
               "--input-sizes", "64", "--deploy", "on", "--flops", "--threads", "2", "--warmup", "0", "--iters", "1",
               "--no-memory", "--output", str(out)], cwd=tmp_path)
    data = json.loads(out.read_text())
    assert data["settings"]["opts"] == ["model.num_top_queries=10"]
    assert [r["config"] for r in data["rows"]] == ["rtdetr_tiny_synthetic", "mlla_rtdetr_tiny_synthetic"]
    assert data["baseline"] == "rtdetr_tiny_synthetic"  # the first model by default
    assert data["rows"][0]["time_vs_baseline"] == 1.0 and data["rows"][1]["time_vs_baseline"] > 0
    # --flops: the GFLOPs of tools/analyze_model.py (eval model), ms per GFLOP and its ratio to the baseline's
    from mlla_rtdetr.engine import build_model, load_config
    from mlla_rtdetr.utils.flops import model_flops, official_gflops

    base, mlla = data["rows"]
    mlla_model = build_model(load_config(MLLA_TINY_CONFIG, ["model.num_top_queries=10"]), checkpoint="")
    expected = model_flops(mlla_model, 64, 64)
    assert mlla["gflops"] == pytest.approx(expected.gflops, rel=1e-6)
    # and the official count (convs and matrix products), with its ratio to the baseline's
    assert mlla["official_gflops"] == pytest.approx(official_gflops(mlla_model, 64, 64, report=expected), rel=1e-6)
    assert base["official_gflops_vs_baseline"] == 1.0
    assert mlla["official_gflops_vs_baseline"] == pytest.approx(mlla["official_gflops"] / base["official_gflops"])
    for r in (base, mlla):
        assert r["ms_per_gflop"] == pytest.approx(r["per_image_ms"] / r["gflops"])
    assert base["ms_per_gflop_vs_baseline"] == 1.0
    assert mlla["ms_per_gflop_vs_baseline"] == pytest.approx(mlla["ms_per_gflop"] / base["ms_per_gflop"], rel=1e-3)

    # Mixed precision: bf16 autocast on the CPU is a variant of its own (loss scaling only for fp16).
    out = tmp_path / "train.json"
    bench.main(["train-step", "--config-file", TINY_CONFIG, "--input-sizes", "96", "--batch-sizes", "2",
                "--deploy", "both", "--precision", "fp32", "bf16", "--warmup", "1", "--iters", "1", "--no-memory",
                "--output", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["deploy"], r["precision"]) for r in rows] == [(False, "fp32"), (False, "bf16"), (True, "fp32"),
                                                             (True, "bf16")]
    for r in rows:
        _positive(r, "median_ms", "throughput_img_s")


def _run_tool(args, cwd):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "benchmark.py")] + args, cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _calls(root):
    return [json.loads(line) for line in (root / "calls.jsonl").read_text().splitlines()]


def test_official_baseline_and_onnxruntime(tmp_path):
    """The README commands: our models beside the official one (a stand-in checkout here) and
    onnxruntime, with ratios to the official model; then the training step."""
    root = write_fake_official(tmp_path / "RT-DETR")
    out = tmp_path / "inf.json"
    proc = _run_tool(["inference", "--config-file", TINY_CONFIG, "--official-root", str(root),
                      "--official-config", "fake_r18vd_120e_coco", "--baseline", "official/fake_r18vd_120e_coco",
                      "--input-sizes", "64", "--batch-sizes", "1", "2", "--deploy", "on", "--onnxruntime", "both",
                      "--threads", "2", "--warmup", "0", "--iters", "1", "--no-memory", "--output", str(out)],
                     cwd=tmp_path)
    data = json.loads(out.read_text())
    assert data["baseline"] == "official/fake_r18vd_120e_coco"
    rows = {(r["config"], r["batch_size"], r["runtime"]): r for r in data["rows"]}
    assert set(rows) == {(c, b, rt) for c in ("rtdetr_tiny_synthetic", "official/fake_r18vd_120e_coco")
                         for b in (1, 2) for rt in ("torch", "onnxruntime")}
    for (cfg, b, rt), r in rows.items():
        _positive(r, "median_ms", "throughput_img_s", "time_vs_baseline")
        # each row against the baseline model's row of the same batch size and runtime
        base = rows[("official/fake_r18vd_120e_coco", b, rt)]
        assert r["baseline_variant"]["runtime"] == rt
        assert r["time_vs_baseline"] == pytest.approx(r["median_ms"] / base["median_ms"])
        assert r["throughput_img_s"] == pytest.approx(1e3 * b / r["median_ms"])
    assert "| official/fake_r18vd_120e_coco | 64 | 2 | onnxruntime |" in proc.stdout
    calls = _calls(root)
    configs = [c for c in calls if c["event"] == "config"]
    # random init (no pretrained download), anchors for the measured size
    assert configs and all(c["kwargs"] == {"PResNet": {"pretrained": False}, "eval_spatial_size": [64, 64]}
                           for c in configs)
    assert sum(c["event"] == "deploy" for c in calls) == len(configs)

    (root / "calls.jsonl").unlink()
    out = tmp_path / "train.json"
    _run_tool(["train-step", "--config-file", TINY_CONFIG, "--official-root", str(root),
               "--official-config", "fake_r18vd_120e_coco", "--baseline", "official/fake_r18vd_120e_coco",
               "--input-sizes", "64", "--batch-sizes", "2", "--warmup", "0", "--iters", "1", "--no-memory",
               "--output", str(out)], cwd=tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [r["config"] for r in rows] == ["rtdetr_tiny_synthetic", "official/fake_r18vd_120e_coco"]
    assert rows[1]["time_vs_baseline"] == 1.0 and rows[0]["time_vs_baseline"] > 0
    crit = [c for c in _calls(root) if c["event"] == "criterion"]
    # official targets: int64 labels, cxcywh boxes normalized to [0, 1], criterion outside autocast
    assert crit and crit[0]["labels_dtype"] == "torch.int64" and crit[0]["metas"] == ["epoch", "global_step", "step"]
    assert 0 <= crit[0]["boxes_min"] and crit[0]["boxes_max"] <= 1 and crit[0]["wh_min"] > 0
    assert crit[0]["autocast"] is False


def test_official_checkout_errors(tmp_path):
    from mlla_rtdetr.errors import ConfigError
    from mlla_rtdetr.utils.official import official_package_dir, resolve_official_config

    with pytest.raises(ConfigError, match="holds no rtdetrv2_pytorch/src/core"):
        official_package_dir(str(tmp_path))
    with pytest.raises(ConfigError, match="--official-root is required"):
        resolve_official_config("", "rtdetrv2_r18vd_120e_coco")
    root = write_fake_official(tmp_path / "RT-DETR")
    assert resolve_official_config(str(root), "official/fake_r18vd_120e_coco").endswith(
        "configs/rtdetrv2/fake_r18vd_120e_coco.yml")
    assert official_package_dir(str(root / "rtdetrv2_pytorch")) == str(root / "rtdetrv2_pytorch")
    with pytest.raises(ConfigError, match=r"No official config 'nope'.*Known: fake_r18vd_120e_coco$"):
        resolve_official_config(str(root), "nope")


def test_official_targets_match_the_official_format():
    from mlla_rtdetr.utils.bench_cases import random_instances
    from mlla_rtdetr.utils.official import official_targets

    batch = random_instances(2, (64, 96), num_classes=5, boxes_per_image=3)
    images, targets = official_targets(batch)
    assert images.shape == (2, 3, 64, 96) and 0 <= images.min() and images.max() <= 1
    xyxy = batch[1]["instances"].gt_boxes.tensor
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 / 96
    h = (xyxy[:, 3] - xyxy[:, 1]) / 64
    torch.testing.assert_close(targets[1]["boxes"][:, 0], cx)
    torch.testing.assert_close(targets[1]["boxes"][:, 3], h)
    assert torch.equal(targets[1]["labels"], batch[1]["instances"].gt_classes)


def test_encoder_scaling_and_attention_json(bench, tmp_path):
    out = tmp_path / "enc.json"
    _run_tool(["encoder-scaling", "--config-file", TINY_CONFIG, "--input-sizes", "64", "128",
               "--levels", "2", "1,2", "--channels-last", "on", "--threads", "2", "--warmup", "0", "--iters", "1",
               "--no-memory", "--output", str(out)], cwd=tmp_path)
    data = json.loads(out.read_text())
    assert data["settings"]["channels_last"] == "on"
    rows = {(r["attention"], r["levels"], r["input_size"]): r for r in data["rows"]}
    assert len(rows) == 8
    # tokens: S5 of a 64 px image is 2x2; S4 4x4
    assert rows[("softmax", "S5", 64)]["tokens"] == 4 and rows[("mlla", "S4+S5", 128)]["tokens"] == 16 + 64
    for r in rows.values():
        _positive(r, "median_ms", "time_ratio_vs_smallest", "time_vs_softmax")
    summary = {(s["attention"], s["levels"]): s for s in data["summary"]}
    assert summary[("mlla", "S5")]["token_ratio"] == 4.0 and summary[("mlla", "S5")]["time_ratio"] > 0

    out = tmp_path / "att.json"
    bench.main(["attention", "--tokens", "16", "64", "--dim", "32", "--heads", "4", "--warmup", "1",
                "--iters", "2", "--no-memory", "--output", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["attention"], r["tokens"]) for r in rows] == [("softmax", 16), ("softmax", 64), ("mlla", 16), ("mlla", 64)]
    for r in rows:
        _positive(r, "median_ms", "time_vs_softmax", "time_ratio_vs_fewest_tokens")
    assert rows[0]["time_vs_softmax"] == 1.0 and rows[0]["time_ratio_vs_fewest_tokens"] == 1.0


def test_peak_memory_in_a_fresh_process(bench, tmp_path):
    out = tmp_path / "mem.json"
    bench.main(["attention", "--attentions", "softmax", "--tokens", "1024", "--dim", "64", "--heads", "2",
                "--warmup", "1", "--iters", "1", "--memory", "--output", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    # qkv (1024 x 192 floats) alone is 0.75 MiB; the process (torch + detectron2) far more.
    assert row["peak_mem_mb"] > 0.5 and row["total_peak_mem_mb"] > 100 and row["memory_method"]


def test_data_pipeline_mode(bench, tmp_path):
    out = tmp_path / "data.json"
    bench.main(["data", "--config-file", TINY_CONFIG, "--workers", "0", "--batch-size", "2", "--warmup", "1",
                "--iters", "2", "--output", str(out), "model.decoder.num_denoising=0"])
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["what"] == "data pipeline" and rows[0]["num_workers"] == 0 and rows[0]["batch_size"] == 2
    assert rows[1]["what"].startswith("train step")
    for r in rows:
        _positive(r, "images_per_s", "ms_per_batch")


def test_data_mode_dense_o2o_next_to_the_recipe_pipeline(bench, tmp_path):
    out = tmp_path / "dense.json"
    bench.main(["data", "--config-file", TINY_CONFIG, "--dense-o2o", "--workers", "0", "--batch-size", "2",
                "--warmup", "1", "--iters", "2", "--skip-train-step", "--output", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"] for r in rows] == ["rt-detr", "dense-o2o: Mosaic", "dense-o2o: no Mosaic"]
    assert rows[0]["vs_rt_detr"] == 1.0
    for r in rows:
        _positive(r, "images_per_s", "images_per_s_per_worker", "ms_per_batch", "vs_rt_detr")
        assert r["vs_rt_detr"] == pytest.approx(r["images_per_s"] / rows[0]["images_per_s"])


@pytest.mark.slow
def test_step_flags_mode_with_two_processes(tmp_path):
    """docs/cluster.md's step-flags command (two gloo processes), run as a user runs it."""
    out = tmp_path / "flags.json"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "benchmark.py"), "step-flags", "--config-file",
                           TINY_CONFIG, "--input-size", "64", "--batch-size", "1", "--warmup", "1", "--iters", "2",
                           "--output", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["what"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["no flags", "one all-reduce", "three collectives", "flags only: one all-reduce",
                          "flags only: three collectives", "failure watcher: one poll"]
    for r in rows.values():
        assert r["processes"] == 2
        _positive(r, "median_ms", "min_ms")
    assert rows["no flags"]["time_vs_no_flags"] == 1.0 and rows["flags only: one all-reduce"]["time_vs_no_flags"] is None


def test_image_check_mode(bench, tmp_path):
    out = tmp_path / "check.json"
    bench.main(["image-check", "--paths", "3000", "--missing", "0.01", "--threads-check", "4", "--folder",
                str(tmp_path), "--warmup", "0", "--iters", "1", "--output", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["threads"] for r in rows] == ["1 thread", "4 threads"]
    for r in rows:
        assert r["paths"] == 3000 and r["missing"] == 30  # both found exactly the files left out
        _positive(r, "seconds", "paths_per_s", "speedup")
    assert not list(tmp_path.glob("image_check_*"))  # generated files removed


def test_analyze_model_counts(tmp_path):
    from detectron2.config import instantiate

    from mlla_rtdetr.engine import load_config

    from mlla_rtdetr.utils.flops import model_flops, official_gflops

    tool = load_tool("analyze_model")
    out = tmp_path / "a.json"
    res = tool.main(["--config-file", TINY_CONFIG, "--input-size", "128", "--output", str(out),
                     "model.decoder.num_layers=1"])
    saved = json.loads(out.read_text())
    cfg = load_config(TINY_CONFIG)
    cfg.model.decoder.num_layers = 1
    model = instantiate(cfg.model)
    assert saved["params"]["total"] == sum(p.numel() for p in model.parameters())
    per = saved["params"]["per_module"]
    assert set(per) >= {"backbone", "encoder", "decoder"}
    assert sum(v["total"] for v in per.values()) == saved["params"]["total"]
    f = saved["flops"]
    assert f["input_size"] == [128, 128] and f["gflops"] == pytest.approx(2 * f["gmacs"])
    assert f["gflops"] == pytest.approx(model_flops(model, 128, 128).gflops, rel=1e-9)
    assert sum(f["by_module_gflops"].values()) == pytest.approx(f["gflops"], rel=1e-6)
    assert res["flops"]["by_module_gflops"]["backbone"] > 0
    assert f["official_gflops"] == pytest.approx(official_gflops(model, 128, 128), rel=1e-9)
