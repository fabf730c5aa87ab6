"""The model-zoo README (``projects/mlla_rtdetr/README.md``): every official row of
``mlla_rtdetr.model_zoo`` whose recipe is in the checkout is listed with its exact numbers, and its
exact train / evaluation commands are there and run (HGNetv2-L here; the training command in
``test_hgnetv2.py``, the ResNet-vd evaluations through ``tools/reproduce_table.py`` in
``test_reproduce_table.py``)."""
import json
import re
import subprocess

import pytest
import torch

from data_utils import synthetic_val_subset
from mlla_rtdetr.config import config_path
from mlla_rtdetr.model_zoo import MODEL_ZOO
from parity_state import load_manifest, make_state
from test_deim_configs import OURS_GFLOPS
from tools_utils import ZOO_README, zoo_readme_command, zoo_readme_commands

ROW = re.compile(
    r"^\| (?P<name>[^|]+?) \| `(?P<recipe>\w+)` \| (?P<params>[\d,]+) \| (?P<gflops>[\d.]+) \| "
    r"(?P<latency>[\d,]+ \([\d.]+×\)|–) \| (?P<ap>[\d.]+) \((?P<ap50>[\d.]+)\) \| (?P<fps>\d+|–) \| `(?P<weights>[^`]+)` \|$")


def _has_recipe(recipe):
    try:
        config_path(f"{recipe}.py")
        return True
    except FileNotFoundError:
        return False


ROWS = [e for e in MODEL_ZOO if _has_recipe(e.recipe)]


# The D-FINE / DEIM table: published GFLOPs and ours (official_gflops), AP without AP50, T4 latency.
DEIM_ROW = re.compile(
    r"^\| (?P<name>[^|]+?) \| `(?P<recipe>\w+)` \| (?P<params>[\d,]+) \| (?P<gflops>\d+) \| (?P<ours>[\d.]+) \| "
    r"(?P<ap>[\d.]+) \| (?P<latency>[\d.]+) \| `(?P<weights>[^`]+)` \|$")
DEIM_TABLES = ("D-FINE", "DEIM-D-FINE", "DEIM-RT-DETRv2")


def _readme_rows(pattern=ROW):
    return {(m["recipe"], m["weights"]): m for m in map(pattern.match, ZOO_README.read_text().splitlines()) if m}


def test_dfine_deim_rows_with_their_numbers():
    """Every D-FINE / DEIM row with its published numbers and our official-count GFLOPs (measured
    by test_deim_configs.py)."""
    listed = _readme_rows(DEIM_ROW)
    rows = [e for e in ROWS if e.table in DEIM_TABLES]
    assert len(rows) == 15 and set(listed) == {(e.recipe, e.weights) for e in rows}
    for e in rows:
        row = listed[(e.recipe, e.weights)]
        assert row["name"] == e.name and int(row["params"].replace(",", "")) == e.params
        assert float(row["gflops"]) == e.gflops and float(row["ap"]) == e.ap and e.ap50 is None
        assert float(row["latency"]) == e.latency_t4_ms
        model = e.recipe.rsplit("_coco", 1)[0].replace("_120e", "").replace("_60e", "").replace("deim_dfine", "dfine")
        assert float(row["ours"]) == OURS_GFLOPS[model][0]


def test_every_official_row_with_its_numbers():
    listed = _readme_rows()
    assert set(listed) == {(e.recipe, e.weights) for e in ROWS if e.table not in DEIM_TABLES}
    latency = {}
    for e in ROWS:
        if e.table in DEIM_TABLES:
            continue
        row = listed[(e.recipe, e.weights)]
        assert row["name"] == e.name
        assert int(row["params"].replace(",", "")) == e.params
        assert float(row["gflops"]) == e.gflops
        assert (float(row["ap"]), float(row["ap50"])) == (e.ap, e.ap50)
        assert row["fps"] == (str(e.fps_t4) if e.fps_t4 else "–")
        # one latency per recipe and table (every recipe of a table measured in one run)
        key = (e.table == "RT-DETRv2 sampling", e.recipe)
        assert latency.setdefault(key, row["latency"]) == row["latency"], e.name
    assert "–" not in latency.values(), latency


def test_exact_commands_of_every_row():
    commands = zoo_readme_commands()
    assert len(commands) == len(set(commands))
    for e in ROWS:
        config = f"--config-file projects/mlla_rtdetr/configs/{e.recipe}.py --num-gpus 8"
        assert f"python tools/train_net.py {config} --eval-only train.init_checkpoint=weights/{e.weights}" in commands
        if e.train_init:
            assert f"python tools/train_net.py {config} train.init_checkpoint=weights/{e.train_init}" in commands
        elif "_dsp_" in e.recipe:  # the fine-tunes start from the checkpoint their recipe names
            assert f"python tools/train_net.py {config}" in commands
    for c in commands:
        recipe = re.search(r"configs/(\w+)\.py", c).group(1)
        assert _has_recipe(recipe), c


@pytest.mark.slow
def test_evaluation_command_on_the_official_hgnetv2_l_file(tmp_path, repo_root, parity_dir):
    """The README's evaluation command of RT-DETRv2-HGNetv2-L on a file in the official format (the
    EMA weights under ``ema.module``; random values from the parity manifest), on three embedded
    images with COCO's 80 categories at 128 px."""
    manifest = parity_dir / "fixtures" / "rtdetrv2_hgnetv2_l.manifest.json"
    state = make_state(load_manifest(str(manifest)), seed=json.loads(manifest.read_text())["state_seed"])
    torch.save({"ema": {"module": state, "updates": 1}, "last_epoch": 71},
               tmp_path / "rtdetrv2_hgnetv2_l_6x_coco_from_paddle.pth")
    json_file, image_root = synthetic_val_subset(tmp_path, 3, coco80=True)
    out = tmp_path / "out"
    cmd = zoo_readme_command("rtdetrv2_hgnetv2_l_6x_coco", eval_only=True, weights_dir=tmp_path) + [
        "dataloader.test.dataset.names=zoo_readme_coco80_val", f"dataloader.test.dataset.json_file={json_file}",
        f"dataloader.test.dataset.image_root={image_root}", "dataloader.test.mapper.image_size=[128,128]",
        "dataloader.test.num_workers=0", "model.encoder.eval_spatial_size=[128,128]",
        "model.decoder.eval_spatial_size=[128,128]", "train.device=cpu", f"train.output_dir={out}"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "official RT-DETR checkpoint; converting" in (out / "log.txt").read_text()
    results = json.loads((out / "eval_only_results.json").read_text())["results"]
    assert 0.0 <= results["bbox_ema"]["AP"] <= 100.0
