"""tools/reproduce_table.py on CPU: official-format checkpoints (random weights from the parity
manifests, under the official file names) evaluated on a COCO-format set made from the embedded
synthetic images with COCO's 80 categories (the official heads have 80 classes)."""
import csv
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch

from data_utils import synthetic_val_subset
from mlla_rtdetr.model_zoo import (
    MODEL_ZOO,
    ManualDownloadError,
    download_url,
    entries_for_weights,
    imagenet_url,
    zoo_entry,
)
from parity_state import load_manifest, make_state


def _official_state(parity_dir, case):
    path = parity_dir / "fixtures" / f"{case}.manifest.json"
    return make_state(load_manifest(str(path)), seed=json.loads(path.read_text())["state_seed"])


def _run(repo_root, *args, timeout=1200):
    return subprocess.run([sys.executable, str(repo_root / "tools" / "reproduce_table.py"), *args],
                          cwd=repo_root, capture_output=True, text=True, timeout=timeout)


def test_zoo_rows_and_official_file_names():
    assert len({e.key for e in MODEL_ZOO}) == len({e.name for e in MODEL_ZOO}) == len(MODEL_ZOO)
    shared = entries_for_weights()["rtdetrv2_hgnetv2_l_6x_coco_from_paddle.pth"]
    assert [e.recipe for e in shared] == ["rtdetr_hgnetv2_l_6x_coco", "rtdetrv2_hgnetv2_l_6x_coco"]
    assert zoo_entry("rtdetrv2_hgnetv2_h_6x_coco").params == 125_584_348
    assert zoo_entry("rtdetrv2_r18vd_120e_coco").weights == "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"
    o365 = zoo_entry("rtdetrv2_r18vd_120e_coco", "rtdetrv2_r18vd_5x_coco_objects365_from_paddle.pth")
    assert o365.ap == 49.0 and o365.table == "COCO + Objects365"


def test_dfine_and_deim_rows_and_where_their_files_are():
    tables = Counter(e.table for e in MODEL_ZOO)
    assert tables["D-FINE"] == tables["DEIM-D-FINE"] == tables["DEIM-RT-DETRv2"] == 5
    dfine = "https://github.com/Peterande/storage/releases/download/dfinev1.0"
    assert download_url(zoo_entry("dfine_hgnetv2_s_coco")) == f"{dfine}/dfine_s_coco.pth"
    assert imagenet_url(zoo_entry("dfine_hgnetv2_x_coco").train_init) == f"{dfine}/PPHGNetV2_B5_stage1.pth"
    s = zoo_entry("deim_dfine_hgnetv2_s_coco")
    assert (s.name, s.ap, s.ap50, s.gflops, s.latency_t4_ms) == ("DEIM-D-FINE-S", 49.0, None, 25.0, 3.49)
    with pytest.raises(ManualDownloadError, match=r"Google Drive only(.|\n)*drive\.google\.com/file/d/1tB8gVJNrfb6dhFvoHJ"
                                                  r"ECKOF5VpkthhfC/view(.|\n)*weights/deim_dfine_hgnetv2_s_coco_120e\.pth"):
        download_url(s)
    # the DEIM README's names: M is the R34 model, M* the R50-m one
    assert zoo_entry("deim_rtdetrv2_r34vd_120e_coco").name == "DEIM-RT-DETRv2-M"
    assert zoo_entry("deim_rtdetrv2_r50vd_m_60e_coco").name == "DEIM-RT-DETRv2-M*"


def test_list_and_missing_checkpoints(tmp_path, repo_root):
    empty = tmp_path / "none"
    empty.mkdir()
    res = _run(repo_root, "--checkpoints", str(empty))
    assert res.returncode == 2 and "No official checkpoint" in res.stderr and "Traceback" not in res.stderr
    ckpts = tmp_path / "ckpts" / "sub"
    ckpts.mkdir(parents=True)
    for name in ("rtdetrv2_hgnetv2_l_6x_coco_from_paddle.pth", "something_else.pth", "dfine_s_coco.pth",
                 "deim_rtdetrv2_r18vd_coco_120e.pth"):
        torch.save({}, ckpts / name)
    res = _run(repo_root, "--checkpoints", str(tmp_path / "ckpts"), "--list")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["RT-DETR-L", "RT-DETRv2-HGNetv2-L", "D-FINE-S", "DEIM-RT-DETRv2-S"]


@pytest.mark.slow
def test_reproduces_a_table_from_official_files(tmp_path, repo_root, parity_dir):
    ckpts = tmp_path / "official"
    ckpts.mkdir()
    # the two official containers: EMA weights under ema.module (v2) and a raw state dict (v1)
    torch.save({"ema": {"module": _official_state(parity_dir, "rtdetrv2_r18vd"), "updates": 1000}, "last_epoch": 119},
               ckpts / "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth")
    torch.save(_official_state(parity_dir, "rtdetr_v1_r18vd"), ckpts / "rtdetr_r18vd_dec3_6x_coco_from_paddle.pth")
    # a D-FINE release file (weights under "model")
    torch.save({"model": _official_state(parity_dir, "dfine_hgnetv2_n")}, ckpts / "dfine_n_coco.pth")
    json_file, image_root = synthetic_val_subset(tmp_path, 3, coco80=True)
    out = tmp_path / "out"
    res = _run(repo_root, "--checkpoints", str(ckpts), "--output-dir", str(out), "--device", "cpu",
               "--threads", "2", "--warmup", "1", "--iters", "2", "--",
               "dataloader.test.dataset.names=repro_coco80_val", f"dataloader.test.dataset.json_file={json_file}",
               f"dataloader.test.dataset.image_root={image_root}", "dataloader.test.mapper.image_size=[320,320]",
               "dataloader.test.num_workers=0")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "| RT-DETR-R18 |" in res.stdout and "| RT-DETRv2-S |" in res.stdout and "| D-FINE-N |" in res.stdout

    rows = {r["recipe"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert set(rows) == {"rtdetr_r18vd_6x_coco", "rtdetrv2_r18vd_120e_coco", "dfine_hgnetv2_n_coco"}
    saved = json.loads((out / "results.json").read_text())
    # GFLOPs of the official count: the RT-DETR rows reproduce the published count, the D-FINE ones
    # are ours (the published D-FINE numbers are calflops counts of the deployed model)
    official_count = {"rtdetr_r18vd_6x_coco": 61.0, "rtdetrv2_r18vd_120e_coco": 61.0,
                      "dfine_hgnetv2_n_coco": 7.11}
    for recipe, row in rows.items():
        entry = zoo_entry(recipe)
        assert float(row["ap_published"]) == entry.ap and row["status"] == "ok"
        evaluated = json.loads((out / entry.key / "eval_only_results.json").read_text())["results"]["bbox_ema"]
        assert float(row["ap"]) == pytest.approx(evaluated["AP"]) and 0.0 <= float(row["ap"]) <= 100.0
        assert float(row["ap_delta"]) == pytest.approx(float(row["ap"]) - entry.ap)
        assert round(float(row["params_m"]) * 1e6) == entry.params
        assert round(float(row["gflops_official_count"]), 2 if entry.table == "D-FINE" else 1) == official_count[recipe]
        assert float(row["latency_ms"]) > 0
        assert (row["latency_t4_ms_published"] != "") == (entry.table == "D-FINE")
        # the converted official weights were loaded, not a fresh model
        assert "official RT-DETR checkpoint; converting" in (out / entry.key / "log.txt").read_text()
    assert entries_for_weights()["dfine_n_coco.pth"][0].params == 3_782_693
    assert float(rows["rtdetrv2_r18vd_120e_coco"]["gflops_executed"]) < 61.0
    assert saved["latency"]["iters"] == 2 and saved["environment"]["torch_threads"] == 2
    assert (out / "table.md").read_text().startswith("| table | model | recipe | AP pub. |")
