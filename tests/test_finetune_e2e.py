"""Fine-tuning as a user runs it: the README's fine-tune command ("Train on your data") on a
2-class COCO dataset on disk (classes ``people`` and ``tree``: "people" is COCO's "person"),
starting from official-format RT-DETR checkpoints with 80 classes (random weights, written here):
the model-zoo name resolved through the cache, and a v1 file passed as a path.

The command is read from README.md and run in a folder that links the repository's ``tools/``,
``projects/`` and ``configs/``, with overrides appended that make the recipe's model the tiny one
(64 px, 4 iterations), so that each run takes seconds.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch
from detectron2.config import instantiate

from data_utils import write_coco_dataset
from mlla_rtdetr.checkpoint.rtdetr_converter import export_official_rtdetr
from mlla_rtdetr.engine import load_config
from mlla_rtdetr.modeling.decoder.rtdetr_decoder import bias_init_with_prob

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RECIPE = "projects/mlla_rtdetr/configs/rtdetrv2_r18vd_finetune_36e.py"
ZOO_FILE = "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"  # the file of the recipe's model-zoo row
TINY_MODEL = [  # projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py's model, at 64 px
    "model.num_top_queries=40", "model.backbone.base_width=16", "model.encoder.hidden_dim=64",
    "model.encoder.nhead=4", "model.encoder.dim_feedforward=128", "model.encoder.eval_spatial_size=[64,64]",
    "model.decoder.hidden_dim=64", "model.decoder.feat_channels=[64,64,64]", "model.decoder.nhead=4",
    "model.decoder.num_layers=2", "model.decoder.dim_feedforward=128", "model.decoder.num_queries=40",
    "model.decoder.num_denoising=20", "model.decoder.eval_spatial_size=[64,64]",
]
SMALL = [
    "dataloader.train.num_workers=0", "dataloader.train.stop_aug_epoch=0", "dataloader.train.total_batch_size=4",
    "dataloader.train.mapper.image_size=[64,64]", "dataloader.test.mapper.image_size=[64,64]",
    "train.max_iter=4", "train.eval_period=4", "train.checkpointer.period=2", "train.log_period=1",
    "train.amp.enabled=False", "train.device=cpu",
]
CLASS_KEYS = ["decoder.enc_score_head.weight", "decoder.enc_score_head.bias", "decoder.dec_score_head.0.weight",
              "decoder.dec_score_head.0.bias", "decoder.dec_score_head.1.weight", "decoder.dec_score_head.1.bias",
              "decoder.denoising_class_embed.weight"]


def readme_finetune_command() -> List[str]:
    section = (REPO / "README.md").read_text().split("### Fine-tune a COCO model", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    argv = shlex.split(blocks[0].replace("\\\n", " "), comments=True)
    assert argv[:4] == ["python", "tools/train_net.py", "--config-file", RECIPE]
    return argv


def run(argv: List[str], cwd: Path, cache: Path, extra=()) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", MLLA_RTDETR_CACHE=str(cache))
    return subprocess.run([sys.executable, *argv[1:], *extra], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def coco80_state(seed: int):
    """Our state dict of the recipe's model made tiny, with 80 classes and distinct random weights."""
    cfg = load_config(RECIPE, TINY_MODEL + ["model.num_classes=80"])
    model = instantiate(cfg.model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.state_dict()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("orchard_user")
    for name in ("tools", "projects", "configs"):
        (root / name).symlink_to(REPO / name)
    write_coco_dataset(root / "orchard", class_names=("people", "tree"))
    cache = root / "cache"
    (cache / "checkpoints").mkdir(parents=True)
    ema, raw = coco80_state(1), coco80_state(2)
    # official v2 training checkpoint (EMA preferred), where the offline message says to put it
    torch.save({"model": export_official_rtdetr(raw), "ema": {"module": export_official_rtdetr(ema), "updates": 9},
                "last_epoch": 119}, cache / "checkpoints" / ZOO_FILE)
    # official v1 (and D-FINE / DEIM-style) file with the weights under "model" only
    torch.save({"model": export_official_rtdetr(raw, "v1")}, root / "rtdetr_v1_coco.pth")
    return root, cache, ema, raw


def test_readme_finetune_command_loads_trains_evaluates_resumes(work):
    root, cache, _, _ = work
    log = ok(run(readme_finetune_command(), root, cache, TINY_MODEL + SMALL))
    assert "init_checkpoint 'rtdetrv2_r18vd_120e_coco' is an official RT-DETR checkpoint; converting." in log
    assert ("fine-tuning from 80 checkpoint classes (no class names recorded; 80 classes: taken as COCO's) "
            "to the dataset's 2. 7 class-dependent tensors initialised as in a fresh model:") in log
    assert all(f"\n  {k}\n" in log or log.count(k) for k in CLASS_KEYS)
    assert "Rows carried over from the checkpoint (1): people <- person" in log
    assert "New classes (fresh rows) (1): tree" in log
    out = root / "output" / "orchard"
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [0, 1, 2, 3]
    results = json.load(open(out / "eval_results.json"))["results"]
    assert "AP" in results["bbox_ema"] and results["images_ema"]["evaluated"] == 4
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["class_names"] == ["people", "tree"] and final["iteration"] == 3

    # README: continue with the run's config.yaml (--resume never reloads the init checkpoint)
    argv = ["python", "tools/train_net.py", "--config-file", "output/orchard/config.yaml", "--resume"]
    log = ok(run(argv, root, cache, ["train.max_iter=6"]))
    assert "Resuming from" in log and "fine-tuning from" not in log
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [0, 1, 2, 3, 4, 5]


def test_carried_rows_equal_the_checkpoints_and_new_rows_are_fresh(work):
    """A v1 file by path, lr 0: the trained model still holds what was loaded."""
    root, cache, _, raw = work
    argv = [a.replace("output/orchard", "output/orchard_rows") for a in readme_finetune_command()]
    ok(run(argv, root, cache, TINY_MODEL + SMALL + [
        f"train.init_checkpoint={root / 'rtdetr_v1_coco.pth'}", "optimizer.lr=0", "train.max_iter=1"]))
    final = torch.load(root / "output" / "orchard_rows" / "model_final.pth", weights_only=True)["model"]
    for key in CLASS_KEYS:
        assert torch.equal(final[key][0], raw[key][0]), key  # people <- person (COCO class 0)
    assert torch.equal(final["decoder.denoising_class_embed.weight"][2], raw["decoder.denoising_class_embed.weight"][80])
    for key in ("decoder.enc_score_head.bias", "decoder.dec_score_head.0.bias", "decoder.dec_score_head.1.bias"):
        assert final[key][1].item() == pytest.approx(bias_init_with_prob(0.01)), key  # tree: fresh
    assert torch.equal(final["decoder.dec_bbox_head.1.layers.2.weight"], raw["decoder.dec_bbox_head.1.layers.2.weight"])


def test_strict_refuses_and_offline_says_where_to_put_the_file(work):
    root, cache, _, _ = work
    argv = [a.replace("output/orchard", "output/orchard_strict") for a in readme_finetune_command()]
    proc = run(argv, root, cache, TINY_MODEL + SMALL + ["train.init_strict=True"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.search(r"shape mismatch\s+decoder\.enc_score_head\.weight\s+\(80, 64\)\s+\(2, 64\)", proc.stderr)
    assert "unless train.init_strict=True" in proc.stderr

    url = "http://127.0.0.1:9/rtdetr_r18vd_coco.pth"  # nothing listens on the discard port: refused at once
    proc = run(argv, root, cache, TINY_MODEL + SMALL + [f"train.init_checkpoint={url}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"Could not download the checkpoint {url}" in proc.stderr
    assert f"put it at\n  {cache / 'checkpoints' / 'rtdetr_r18vd_coco.pth'}\n" in proc.stderr
