"""The official RT-DETR recipes beyond COCO-from-ImageNet: Pascal VOC (``rtdetrv2_r18vd_120e_voc``)
and the fine-tunes from the official Objects365-pretrained models (``rtdetr_*_from_objects365``).

The discrete-sampling fine-tunes (``rtdetrv2_*_dsp_*``) are in ``tests/test_rtdetr_sampling.py``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.config import instantiate
from PIL import Image

from recipe_utils import load_recipe, recipe_without

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = "https://github.com/lyuwenyu/storage/releases/download/v0.1/"
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# recipe: (base recipe, official checkpoint: the Objects365-pretrained model fine-tuned on COCO)
O365_RECIPES = {
    "rtdetr_r18vd_6x_coco_from_objects365.py": ("rtdetr_r18vd_6x_coco.py", "rtdetr_r18vd_5x_coco_objects365_from_paddle.pth"),
    "rtdetr_r50vd_6x_coco_from_objects365.py": ("rtdetr_r50vd_6x_coco.py", "rtdetr_r50vd_2x_coco_objects365_from_paddle.pth"),
    "rtdetr_r101vd_6x_coco_from_objects365.py": ("rtdetr_r101vd_6x_coco.py", "rtdetr_r101vd_2x_coco_objects365_from_paddle.pth"),
}



# ----------------------------------------------------------------------------- Pascal VOC
def test_voc_recipe_is_the_official_one():
    cfg, base = load_recipe("rtdetrv2_r18vd_120e_voc.py"), load_recipe("rtdetrv2_r18vd_120e_coco.py")
    assert cfg.model.num_classes == 20
    assert list(cfg.dataloader.train.dataset.names) == ["voc_2007_trainval", "voc_2012_trainval"]
    assert cfg.dataloader.test.dataset.names == "voc_2007_test"
    assert cfg.dataloader.train.total_batch_size == 32
    assert cfg.train.output_dir.endswith("rtdetrv2_r18vd_120e_voc")
    assert cfg.dataloader.evaluator.output_dir == "./output/rtdetrv2_r18vd_120e_voc/inference"
    # the rest is the COCO R18 recipe: 120 epochs, stop at 117, no multi-scale, groups, warm-up, EMA
    changed = ("model.num_classes", "dataloader.train.dataset.names", "dataloader.train.total_batch_size",
               "dataloader.test.dataset.names", "dataloader.evaluator.output_dir", "train.output_dir")
    assert recipe_without(cfg, *changed) == recipe_without(base, *changed)
    assert cfg.train.epochs == 120 and cfg.dataloader.train.stop_aug_epoch == 117
    assert cfg.dataloader.train.multiscale_sizes is None and cfg.train.init_checkpoint == ""
    model = instantiate(cfg.model)
    assert model.decoder.dec_score_head[0].out_features == 20
    assert model.decoder.denoising_class_embed.weight.shape == (21, 256)
    cfg.train.output_dir = "/runs/voc"  # the COCO-format test ground truth follows the output dir
    assert cfg.dataloader.evaluator.output_dir == "/runs/voc/inference"


def _write_voc_year(root: Path, year: str, splits: dict, seed: int):
    """A VOCdevkit year folder: JPEGImages, Annotations (one or two objects per image, one of them
    ``difficult``) and ImageSets/Main/<split>.txt."""
    g = torch.Generator().manual_seed(seed)
    base = root / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for n, fileid in enumerate(ids):
            w, h = 96 + 16 * (n % 3), 80 + 16 * (n % 2)
            pixels = (torch.rand(h, w, 3, generator=g) * 60).to(torch.uint8)
            objects = []
            for k in range(1 + n % 2):
                x0, y0 = 5 + 30 * k, 8 + 20 * k
                x1, y1 = x0 + 40, y0 + 36
                pixels[y0:y1, x0:x1] = torch.tensor([200, 60 + 90 * k, 40])
                cls = VOC_CLASSES[(n + 7 * k) % 20]
                objects.append(
                    f"<object><name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated>"
                    f"<difficult>{k}</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                    f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                )
            Image.fromarray(pixels.numpy()).save(base / "JPEGImages" / f"{fileid}.jpg", quality=95)
            (base / "Annotations" / f"{fileid}.xml").write_text(
                f"<annotation><folder>VOC{year}</folder><filename>{fileid}.jpg</filename><size><width>{w}"
                f"</width><height>{h}</height><depth>3</depth></size>{''.join(objects)}</annotation>"
            )


@pytest.mark.slow
def test_voc_recipe_trains_and_evaluates_on_a_vocdevkit(tmp_path):
    """The VOC recipe as a user runs it: tools/train_net.py on VOC2007 + VOC2012 folders found
    through DETECTRON2_DATASETS, evaluated with COCO metrics on VOC2007 test."""
    data = tmp_path / "datasets"
    _write_voc_year(data, "2007", {"trainval": ["000005", "000007", "000009"], "test": ["000001", "000004"]}, 0)
    _write_voc_year(data, "2012", {"trainval": ["2008_000002", "2008_000003"]}, 1)
    out = tmp_path / "run"
    env = dict(os.environ, DETECTRON2_DATASETS=str(data), MLLA_RTDETR_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", "projects/mlla_rtdetr/configs/rtdetrv2_r18vd_120e_voc.py",
         "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
         "dataloader.test.batch_size=2", "dataloader.train.mapper.image_size=[96,96]",
         "dataloader.test.mapper.image_size=[96,96]", "model.encoder.eval_spatial_size=[96,96]",
         "model.decoder.eval_spatial_size=[96,96]", "train.amp.enabled=False", "train.max_iter=2",
         "model.decoder.num_queries=100", "train.eval_period=0", "train.checkpointer.period=0",
         f"train.output_dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stderr + proc.stdout
    assert "voc_2007_trainval+voc_2012_trainval: 3 images, 4 boxes; 2 images, 3 boxes; 20 classes" in log
    results = json.loads((out / "eval_results.json").read_text())["results"]
    assert 0.0 <= results["bbox_ema"]["AP"] <= 100.0
    (gt_file,) = (tmp_path / "cache" / "coco_json").glob("voc_2007_test-*.json")  # the converted ground truth
    gt = json.loads(gt_file.read_text())
    assert [c["name"] for c in gt["categories"]] == list(VOC_CLASSES)
    assert len(gt["images"]) == 2 and len(gt["annotations"]) == 3  # difficult objects kept
    first = min(gt["annotations"], key=lambda a: (str(a["image_id"]), a["bbox"][0]))
    assert first["bbox"] == [5.0, 8.0, 40.0, 36.0]  # detectron2: 1-based corners minus one


# ----------------------------------------------------------------------------- Objects365
@pytest.mark.parametrize("name", sorted(O365_RECIPES))
def test_objects365_recipes_fine_tune_the_official_checkpoint(name):
    base_name, ckpt = O365_RECIPES[name]
    cfg, base = load_recipe(name), load_recipe(base_name)
    assert cfg.train.init_checkpoint == OFFICIAL + ckpt and base.train.init_checkpoint == ""
    assert cfg.train.output_dir.endswith(name[:-3])
    changed = ("train.init_checkpoint", "train.output_dir")
    assert recipe_without(cfg, *changed) == recipe_without(base, *changed)


def test_objects365_recipe_starts_from_an_official_v1_checkpoint(tmp_path, parity_dir, monkeypatch):
    """The URL is downloaded once into the cache, recognised as an official v1
    checkpoint (EMA weights preferred) and converted into the recipe's model."""
    from parity_state import load_manifest, make_state

    from mlla_rtdetr.checkpoint import sources

    from mlla_rtdetr.engine import ModelEMA, load_init_checkpoint

    state = make_state(load_manifest(parity_dir / "fixtures" / "rtdetr_v1_r18vd.manifest.json"), seed=0)
    local = tmp_path / "rtdetr_r18vd_5x_coco_objects365_from_paddle.pth"
    torch.save({"ema": {"module": state, "updates": 0}}, local)
    fetched = []
    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "urlopen", lambda url, **kw: fetched.append(url) or open(local, "rb"))

    cfg = load_recipe("rtdetr_r18vd_6x_coco_from_objects365.py")
    model = instantiate(cfg.model)
    ema = ModelEMA(model, cfg.train.model_ema.decay, cfg.train.model_ema.warmups)
    report = load_init_checkpoint(model, cfg.train.init_checkpoint, ema)
    assert fetched == [cfg.train.init_checkpoint] and report["format"] == "official RT-DETR"
    ours = model.state_dict()
    for key in ("backbone.conv1.conv1_1.conv.weight", "decoder.dec_score_head.2.weight", "encoder.encoder.0.layers.0.linear1.weight"):
        assert torch.equal(ours[key], state[key]), key
    assert torch.equal(ema.module.state_dict()["decoder.dec_score_head.2.weight"], state["decoder.dec_score_head.2.weight"])
