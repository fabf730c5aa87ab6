"""The figures of a paper, run as a user runs them: tools/analyze_results.py on a hand-computable
case (2 images, 4 boxes, 6 detections) checked against the numbers worked out by hand and against
pycocotools' own COCOeval; tools/collect_results.py's cost-accuracy and seed-curve figures on a
fabricated sweep; the one box drawer."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Two 100x100 images; classes a (id 1) and b (id 2). Areas: small < 32^2 <= medium < 96^2.
GT = {
    "images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.png"},
               {"id": 2, "width": 100, "height": 100, "file_name": "2.png"}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},  # a, small
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 0},  # b, medium
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},  # a, medium
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [60, 60, 30, 30], "area": 900, "iscrowd": 0},  # a, small
    ],
}
DETS = [
    {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},  # finds box 1
    {"image_id": 1, "category_id": 2, "bbox": [50, 50, 40, 40], "score": 0.8},  # finds box 2
    {"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.3},  # box 2 as the wrong class
    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.7},  # finds box 3
    {"image_id": 2, "category_id": 2, "bbox": [60, 60, 30, 30], "score": 0.6},  # box 4 as the wrong class
    {"image_id": 2, "category_id": 1, "bbox": [20, 70, 10, 10], "score": 0.4},  # on background
]


def _write(tmp_path, dets=DETS, name="dets.json"):
    gt, dt = tmp_path / "gt.json", tmp_path / name
    gt.write_text(json.dumps(GT))
    dt.write_text(json.dumps(dets))
    return gt, dt


def _check_png(path: Path, min_size=(300, 200)):
    """A real figure: readable, big enough, not one flat colour, under 300 KB."""
    assert path.is_file(), path
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] >= min_size[0] and img.shape[0] >= min_size[1], img.shape
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    assert path.stat().st_size < 300_000
    return img


def _pycocotools_stats(gt_path, dt_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_path))
    ev = COCOeval(gt, gt.loadRes(str(dt_path)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def test_analyze_results_hand_case_numbers_and_figures(tmp_path):
    gt, dt = _write(tmp_path)
    out = tmp_path / "analysis"
    proc = subprocess.run([sys.executable, "tools/analyze_results.py", "--gt", str(gt), "--detections", str(dt),
                           "--output-dir", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((out / "analysis.json").read_text())["runs"]["dets"]
    coco = a["coco"]

    # By hand. Class a: 3 boxes; detections 0.9 TP, 0.7 TP, 0.4 FP, 0.3 FP: precision 1 up to recall 2/3,
    # recall 1 never reached -> 67 of COCO's 101 recall points (0, 0.01 .. 0.66) -> AP = 67/101 at every
    # IoU (the boxes are exact). Class b: 1 box found first -> AP 100.
    ap_a = 100 * 67 / 101
    assert coco["per_class"]["a"]["AP"] == pytest.approx(ap_a)
    assert coco["per_class"]["a"]["AP50"] == pytest.approx(ap_a)
    assert coco["per_class"]["b"]["AP"] == pytest.approx(100.0)
    assert coco["overall"]["AP"] == pytest.approx((ap_a + 100) / 2)
    # Small boxes (a only): box 1 found (0.9), box 4 missed, the 10x10 background detection a false
    # positive -> AP 51/101; medium: found first in both classes -> 100; no large box -> none.
    assert a["sizes"]["overall"]["small"] == pytest.approx(100 * 51 / 101)
    assert a["sizes"]["overall"]["medium"] == pytest.approx(100.0)
    assert a["sizes"]["overall"]["large"] is None
    assert a["sizes"]["num_gt"] == {"small": 2, "medium": 2, "large": 0}
    # ... and these are COCOeval's own numbers (pycocotools, independent of faster-coco-eval)
    ev = _pycocotools_stats(gt, dt)
    for i, key in enumerate(("AP", "AP50", "AP75", "APs", "APm")):
        assert coco["overall"][key] == pytest.approx(100 * ev.stats[i]), key
    assert coco["overall"]["AR100"] == pytest.approx(100 * ev.stats[8])
    p50 = ev.eval["precision"][0, :, :, 0, 2]
    assert a["pr_curves"]["iou50"]["per_class"]["a"] == pytest.approx(p50[:, 0].tolist())
    assert a["pr_curves"]["iou50"]["overall"] == pytest.approx(p50.mean(1).tolist())
    assert len(a["pr_curves"]["recall"]) == 101

    # Score threshold 0.5, all classes (4 boxes): 0.9, 0.8, 0.7 TP and 0.6 FP -> P = R = F1 = 3/4.
    tc = a["threshold_curves"]
    i50 = tc["thresholds"].index(0.5)
    assert (tc["all"]["precision"][i50], tc["all"]["recall"][i50], tc["all"]["f1"][i50]) == pytest.approx((0.75, 0.75, 0.75))
    # Best: any threshold in (0.6, 0.7] keeps the three TPs only: P 1, R 3/4, F1 6/7; the lowest, 0.61, is reported.
    assert tc["all"]["best"] == pytest.approx({"threshold": 0.61, "f1": 6 / 7, "precision": 1.0, "recall": 0.75})
    assert tc["per_class"]["a"]["best"] == pytest.approx({"threshold": 0.41, "f1": 0.8, "precision": 1.0, "recall": 2 / 3})
    assert tc["per_class"]["a"]["precision"][-1] is None  # nothing scores >= 1.0

    # Confusion at score >= 0.5, IoU >= 0.5 (class-agnostic matching): a found as a twice, box 4 (a) as b,
    # b found as b; no false positive or miss above 0.5.
    conf = a["confusion"]
    assert conf["labels"] == ["a", "b", "background"]
    assert conf["matrix"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]

    # TIDE: both wrong-class detections are classification errors (fixing them recovers box 4 of class a:
    # AP50 of a 66.3 -> 100, +16.8 overall), the 0.4 one a background error; nothing else.
    tide = a["tide"]
    assert tide["AP50"] == pytest.approx(coco["overall"]["AP50"])
    assert tide["counts"] == {"Cls": 2, "Loc": 0, "Both": 0, "Dupe": 0, "Bkg": 1, "Miss": 0}
    assert tide["dAP"]["Cls"] == pytest.approx((100 - ap_a) / 2)
    assert tide["dAP"]["Loc"] == tide["dAP"]["Dupe"] == tide["dAP"]["Miss"] == 0

    sizes = {p: _check_png(out / p).shape[:2] for p in ("pr_curves.png", "threshold_curves.png", "confusion_matrix.png",
                                                          "error_breakdown.png", "ap_by_size.png")}
    assert sizes["threshold_curves.png"][1] > 2.5 * sizes["threshold_curves.png"][0]  # three panels side by side
    assert sizes["pr_curves.png"][1] > 2 * sizes["pr_curves.png"][0]  # two panels
    md = (out / "analysis.md").read_text()
    for heading in ("## COCO box metrics", "## Per class", "## Error breakdown (TIDE", "## Confusion matrix of dets"):
        assert heading in md
    assert "| a | 2 | 1 | 0 |" in md


def test_analyze_results_compares_two_runs_and_rejects_foreign_detections(tmp_path):
    gt, dt = _write(tmp_path)
    _, dt2 = _write(tmp_path, DETS[:2], "better.json")
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "tools/analyze_results.py", "--gt", str(gt), "--detections", str(dt), str(dt2),
                           "--names", "A", "B", "--output-dir", str(out), "--no-tide", "--score-threshold", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((out / "analysis.json").read_text())["runs"]
    assert list(runs) == ["A", "B"] and "tide" not in runs["A"]
    # at score >= 0: A's two extra detections of a are background false positives
    assert runs["A"]["confusion"]["matrix"][2] == [2, 0, 0]
    assert runs["B"]["confusion"]["matrix"] == [[1, 0, 2], [0, 1, 0], [0, 0, 0]]  # B misses boxes 3 and 4
    two = _check_png(out / "confusion_matrix.png")
    assert two.shape[1] > 1.6 * two.shape[0]  # one matrix per run, side by side
    assert not (out / "error_breakdown.png").exists()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**DETS[0], "image_id": 7}]))
    proc = subprocess.run([sys.executable, "tools/analyze_results.py", "--gt", str(gt), "--detections", str(bad),
                           "--output-dir", str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "image ids [7] are not among its 2 images" in proc.stderr


def test_pareto_front():
    from mlla_rtdetr.utils.paper_figures import pareto_front

    #          cost:  5    3    4    2    6
    #          AP:   40   35   30   20   45   -> front by cost: 2 (20), 3 (35), 5 (40), 6 (45); 4 (30) is beaten
    assert pareto_front([5, 3, 4, 2, 6], [40, 35, 30, 20, 45]) == [3, 1, 0, 4]
    assert pareto_front([1, 1], [2, 3]) == [1]


def test_collect_results_cost_accuracy_and_seed_curves(tmp_path):
    from test_sweep_table import make_sweep

    root = make_sweep(tmp_path / "sweep", with_stats=False)
    bench = tmp_path / "bench.json"
    # tools/benchmark.py inference rows: batch 1 is used (batch 8 ignored); latency = per-image median
    bench.write_text(json.dumps({"mode": "inference", "rows": [
        {"config": "cfg", "input_size": 640, "batch_size": 8, "per_image_ms": 1.0, "median_ms": 8.0, "gflops": 60.0},
        {"config": "cfg", "input_size": 640, "batch_size": 1, "per_image_ms": 4.5, "median_ms": 4.5, "gflops": 60.0},
    ]}))
    proc = subprocess.run([sys.executable, "tools/collect_results.py", str(root), "--no-params", "--benchmark", str(bench),
                           "--plot", "latency_ms", "gflops", "--curves", "total_loss", "bbox_ema/AP"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| Latency (ms) |" in proc.stdout and "4.50" in proc.stdout
    for name in ("results_AP_vs_latency_ms.png", "results_AP_vs_gflops.png", "results_curve_total_loss.png",
                 "results_curve_bbox_ema_AP.png"):
        _check_png(root / name)

    proc = subprocess.run([sys.executable, "tools/collect_results.py", str(root), "--no-params", "--plot", "latency_ms"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "add --benchmark, --latency" in proc.stderr


def test_table_points_are_the_seed_means():
    from mlla_rtdetr.sweep.results import RunResult
    from mlla_rtdetr.sweep.table import seed_table, table_points

    runs = [RunResult(Path(f"r{i}"), f"r{i}", swept={"att": att, "train.seed": str(s)}, metrics={"AP": ap},
                      stats={"latency_ms": lat})
            for i, (att, s, ap, lat) in enumerate([("soft", 0, 30.0, 4.0), ("soft", 1, 32.0, 4.0),
                                                    ("mlla", 0, 35.0, 5.0), ("mlla", 1, 36.0, 5.0)])]
    points = table_points(seed_table(runs), "Latency (ms)", "AP")
    assert [p["name"] for p in points] == ["soft", "mlla"]
    assert [p["y"] for p in points] == [31.0, 35.5]
    assert points[0]["y_std"] == pytest.approx(np.std([30, 32], ddof=1))


def test_draw_boxes_labels_colours_and_scale():
    from mlla_rtdetr.utils.visualize import draw_boxes

    img = np.zeros((60, 80, 3), np.uint8)
    out = draw_boxes(img, np.array([[10, 20, 40, 50], [50, 0, 70, 30]]), ["x", None], [(255, 0, 0), (0, 255, 0)],
                     width=1)
    assert img.sum() == 0 and out.shape == img.shape
    assert tuple(out[35, 10]) == (255, 0, 0) and tuple(out[15, 70]) == (0, 255, 0)  # left / right edges
    assert (out[5:19, 10:20] == (255, 0, 0)).all(-1).any()  # label background above the first box
    assert not (out[40:50, 55:65] != 0).any()  # nothing drawn below the unlabeled box
    big = draw_boxes(img, [[10, 20, 40, 50]], ["gt x"], (255, 255, 255), scale=2.0, label_below=True)
    assert big.shape == (120, 160, 3) and tuple(big[60, 20]) == (255, 255, 255)
    assert (big[101:115, 20:40] == 255).all(-1).any()  # label under the box (y1 = 100 at 2x)
    with pytest.raises(ValueError, match="as many labels"):
        draw_boxes(img, [[0, 0, 5, 5]], ["a", "b"])


# ----------------------------------------------------------------------------- heatmaps (trained demo model)
DEMO_RECIPE = "projects/mlla_rtdetr/configs/mlla_rtdetr_demo_synthetic.py"
DEMO_ITERS = 200


@pytest.fixture(scope="module")
def trained_demo_run(tmp_path_factory):
    """The demo recipe trained for DEMO_ITERS iterations at 1 thread (tools/train_net.py, as a user
    runs it), evaluated once at the end; shared by the tests below."""
    import os

    out = tmp_path_factory.mktemp("demo_run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", DEMO_RECIPE,
                           f"train.max_iter={DEMO_ITERS}", "train.eval_period=0", "train.checkpointer.period=100000",
                           "train.model_ema.eval_raw=False", f"train.output_dir={out}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_heatmaps_of_the_trained_demo_model_lie_on_the_objects(trained_demo_run, tmp_path):
    import os

    out = tmp_path / "heatmaps"
    layers = ["backbone:S4", "encoder:S3", "encoder.encoder.0"]  # the last: the MLLA intra-scale block on S5
    proc = subprocess.run([sys.executable, "tools/heatmaps.py", str(trained_demo_run), str(trained_demo_run),
                           "--names", "A", "B", "--layers", *layers, "--methods", "eigencam", "layercam",
                           "--num-images", "4", "--output-dir", str(out)],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "heatmaps.json").read_text())
    a, b = report["runs"]["A"], report["runs"]["B"]
    assert a["maps"] == b["maps"]  # the same model and images give the same maps
    # LayerCAM of the best detections' class scores: higher inside the ground-truth boxes than outside,
    # and more of the map on the boxes than their share of the image (measured on this recipe: in/out
    # 2.3 on backbone:S4 and 13 on encoder:S3 after 200 iterations, 4.0 and 15 after 600)
    for layer in ("backbone:S4", "encoder:S3"):
        m = a["maps"][layer]["layercam"]
        assert m["mean_ratio"] > 1.5, (layer, m)
        assert m["energy_in_boxes"] > m["box_area"] + 0.05, (layer, m)
    for per_query in a["deformable_attention"]:
        for q in per_query:
            assert len(q["level_share"]) == 3 and sum(q["level_share"]) == pytest.approx(1.0, abs=1e-5)
    grid = _check_png(out / "cam_layercam.png")
    # 4 image rows, 2 runs x 3 layers = 6 columns of square cells
    assert 1.3 < grid.shape[1] / grid.shape[0] < 1.7
    _check_png(out / "cam_eigencam.png")
    attn = _check_png(out / "deform_attn.png")
    assert attn.shape[0] > 1.5 * attn.shape[1]  # 2 runs x 4 images rows, 3 levels + all columns

    bad = subprocess.run([sys.executable, "tools/heatmaps.py", str(trained_demo_run), "--layers", "backbone.layers.2",
                          "--num-images", "1", "--methods", "gradcam", "--output-dir", str(tmp_path / "x")],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert bad.returncode == 2 and "outputs a tuple, not one map" in bad.stderr


@pytest.mark.slow
def test_analyze_results_of_a_run_folder_matches_its_evaluation(trained_demo_run, tmp_path):
    out = tmp_path / "analysis"
    proc = subprocess.run([sys.executable, "tools/analyze_results.py", str(trained_demo_run), "--output-dir", str(out),
                           "--no-tide"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (trained_demo_run / "inference" / "model_final_ema" / "coco_instances_results.json").is_file()
    analysis = json.loads((out / "analysis.json").read_text())["runs"][trained_demo_run.name]
    logged = json.loads((trained_demo_run / "eval_results.json").read_text())["results"]["bbox_ema"]
    for key in ("AP", "AP50", "AP75"):  # the same numbers as the training run's own final evaluation
        assert analysis["coco"]["overall"][key] == pytest.approx(logged[key], abs=1e-6)
    assert analysis["class_names"] == ["circle", "rectangle", "triangle", "star", "cross"]
    for name in ("pr_curves.png", "threshold_curves.png", "confusion_matrix.png", "ap_by_size.png"):
        _check_png(out / name)


def test_deformable_attention_capture_reproduces_the_layer():
    import torch

    from mlla_rtdetr.modeling.decoder.ms_deform_attn import MSDeformableAttention, deformable_attention_core

    torch.manual_seed(0)
    attn = MSDeformableAttention(embed_dim=32, num_heads=4, num_levels=2, num_points=[2, 3]).eval()
    torch.nn.init.normal_(attn.attention_weights.weight, std=0.1)
    shapes = [(4, 4), (2, 2)]
    query, value = torch.randn(1, 5, 32), torch.randn(1, 20, 32)
    ref = torch.rand(1, 5, 1, 4) * 0.5 + 0.25
    loc, w = attn.sampling_locations_and_weights(query, ref, shapes)
    assert loc.shape == (1, 5, 4, 5, 2) and w.shape == (1, 5, 4, 5)
    assert torch.allclose(w.sum(-1), torch.ones(1, 5, 4))
    v = attn.value_proj(value).reshape(1, 20, 4, 8)
    again = attn.output_proj(deformable_attention_core(v, shapes, loc, w, [2, 3]))
    assert torch.equal(again, attn(query, ref, value, shapes))
