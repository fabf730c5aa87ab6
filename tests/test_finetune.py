"""Fine-tuning across class sets (``train.init_checkpoint`` of another class count or other
classes), official checkpoints by name or URL through the cache, and the one checkpoint reader.

Unit level, in process; the README command as a user runs it is ``tests/test_finetune_e2e.py``.
"""
import urllib.error
from collections import OrderedDict

import pytest
import torch
from detectron2.config import instantiate

from mlla_rtdetr.checkpoint import sources
from mlla_rtdetr.checkpoint.class_rows import COCO_CLASSES, class_dependent_keys, match_class_rows
from mlla_rtdetr.checkpoint.io import read_checkpoint_file
from mlla_rtdetr.checkpoint.rtdetr_converter import export_official_rtdetr
from mlla_rtdetr.engine import ModelEMA, load_config, load_init_checkpoint
from mlla_rtdetr.engine.checkpointer import CHECKPOINT_FORMAT
from mlla_rtdetr.errors import CheckpointError, PathNotFoundError, UserError
from mlla_rtdetr.modeling.decoder.rtdetr_decoder import bias_init_with_prob

CLASS_KEYS = {
    "decoder.enc_score_head.weight": 0, "decoder.enc_score_head.bias": 0,
    "decoder.dec_score_head.0.weight": 0, "decoder.dec_score_head.0.bias": 0,
    "decoder.dec_score_head.1.weight": 0, "decoder.dec_score_head.1.bias": 0,
    "decoder.denoising_class_embed.weight": 1,
}


def tiny(num_classes: int, seed: int = 0, **decoder):
    cfg = load_config("rtdetr_tiny_synthetic.py")
    cfg.model.num_classes = num_classes
    for k, v in decoder.items():
        cfg.model.decoder[k] = v
    torch.manual_seed(seed)
    return instantiate(cfg.model)


def spread(model, seed: int):
    """Distinct random values in every parameter (so copied rows are recognisable)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def test_class_names_match_by_name_synonym_and_mapping():
    assert match_class_rows(["People", "blob", "Motorbike", "dining_table", "TV"], COCO_CLASSES) == [0, None, 3, 60, 62]
    assert match_class_rows(["people", "blob"], COCO_CLASSES, {"blob": "car", "People": None}) == [None, 2]
    with pytest.raises(CheckpointError, match=r"dataset classes \['tree'\].*checkpoint classes \['lorry'\]"):
        match_class_rows(["people"], COCO_CLASSES, {"tree": "person", "people": "lorry"})


def test_the_decoder_declares_its_class_dependent_tensors():
    assert class_dependent_keys(tiny(3)) == CLASS_KEYS
    agnostic = class_dependent_keys(tiny(3, query_select_method="agnostic", num_denoising=0))
    assert agnostic == {k: 0 for k in CLASS_KEYS if "dec_score_head" in k}


def test_official_80_class_checkpoint_fine_tunes_to_two_classes(tmp_path):
    src = spread(tiny(80), seed=1)
    sd = src.state_dict()
    path = tmp_path / "rtdetrv2_official.pth"  # official v2 layout: EMA weights preferred
    torch.save({"model": export_official_rtdetr(spread(tiny(80), seed=2).state_dict()),
                "ema": {"module": export_official_rtdetr(sd), "updates": 10}, "last_epoch": 3}, path)
    fresh = tiny(2, seed=5).state_dict()
    dst = tiny(2, seed=5)
    ema = ModelEMA(dst)
    report = load_init_checkpoint(dst, str(path), ema, class_names=["Motorbike", "blob"], strict=False)
    assert report["format"] == "official RT-DETR" and report["reinitialized"] == sorted(CLASS_KEYS)
    assert report["carried"] == {"Motorbike": "motorcycle"} and report["new_classes"] == ["blob"]
    assert report["ema"] == "reset from the loaded model"
    got = dst.state_dict()
    for key in CLASS_KEYS:
        assert torch.equal(got[key][0], sd[key][3]), key  # motorcycle is COCO class 3
        assert torch.equal(got[key][1], fresh[key][1]), key  # blob: as a fresh model initialises it
    assert torch.equal(got["decoder.denoising_class_embed.weight"][2], sd["decoder.denoising_class_embed.weight"][80])
    assert torch.equal(got["decoder.dec_score_head.1.bias"][1], torch.tensor(bias_init_with_prob(0.01)))
    for key, value in sd.items():  # everything else is the checkpoint's EMA weights
        if key not in CLASS_KEYS and not key.startswith(("decoder.anchors", "decoder.valid_mask")):
            assert torch.equal(got[key], value), key
    assert all(torch.equal(v, got[k]) for k, v in ema.module.state_dict().items())

    # train.init_strict=True (and every caller that does not fine-tune) refuses, with the table
    with pytest.raises(CheckpointError, match=r"shape mismatch\s+decoder\.enc_score_head\.weight\s+\(80, 64\)\s+\(2, 64\)"):
        load_init_checkpoint(tiny(2), str(path), class_names=["Motorbike", "blob"], strict=True)


def test_our_checkpoint_fine_tunes_by_its_recorded_class_names(tmp_path):
    src = spread(tiny(3), seed=3)
    sd = src.state_dict()
    path = tmp_path / "ours.pth"
    torch.save({"__format__": CHECKPOINT_FORMAT, "model": sd, "ema": {"module": sd, "updates": 7},
                "class_names": ["circle", "star", "cross"], "iteration": 9}, path)
    # same class count, other order: rows follow the names
    dst = tiny(3, seed=6)
    report = load_init_checkpoint(dst, str(path), ModelEMA(dst), class_names=["Star", "square", "circle"], strict=False)
    assert report["carried"] == {"Star": "star", "circle": "circle"} and report["ema"] == "reset from the loaded model"
    for key in CLASS_KEYS:
        assert torch.equal(dst.state_dict()[key][0], sd[key][1]) and torch.equal(dst.state_dict()[key][2], sd[key][0])
    # the same classes: loaded as they are, EMA included
    dst = tiny(3, seed=6)
    report = load_init_checkpoint(dst, str(path), ModelEMA(dst), class_names=["circle", "star", "cross"], strict=False)
    assert "reinitialized" not in report and report["ema"] == "loaded"
    assert all(torch.equal(v, sd[k]) for k, v in dst.state_dict().items())


def test_other_mismatches_still_refuse_with_the_table(tmp_path):
    sd = tiny(80).state_dict()
    sd["decoder.query_pos_head.layers.0.weight"] = torch.zeros(7, 4)  # not a class-dependent tensor
    path = tmp_path / "other.pth"
    for checkpoint in ({"model": sd}, {"__format__": CHECKPOINT_FORMAT, "model": sd}):  # official layout, ours
        torch.save(checkpoint, path)
        with pytest.raises(CheckpointError) as e:
            load_init_checkpoint(tiny(2), str(path), class_names=["person", "blob"], strict=False)
        message = str(e.value)
        assert "decoder.query_pos_head.layers.0.weight" in message and "decoder.enc_score_head.weight" in message
        assert "Only class-dependent tensors differ" not in message
    del sd["decoder.query_pos_head.layers.0.weight"]
    for checkpoint in ({"model": sd}, {"__format__": CHECKPOINT_FORMAT, "model": sd}):
        torch.save(checkpoint, path)
        with pytest.raises(CheckpointError, match="Only class-dependent tensors differ(.|\n)*train.init_strict=True"):
            load_init_checkpoint(tiny(2), str(path))


# ----------------------------------------------------------------------------- sources
def test_url_downloaded_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path / "cache"))
    remote = tmp_path / "remote" / "weights.pth"
    remote.parent.mkdir()
    sd = tiny(2).state_dict()
    torch.save({"model": sd}, remote)
    dst = tiny(2, seed=4)
    report = load_init_checkpoint(dst, remote.as_uri())
    cached = tmp_path / "cache" / "checkpoints" / "weights.pth"
    assert report["format"] == "official RT-DETR" and cached.is_file()  # our keys are v2 official ones
    assert all(torch.equal(v, sd[k]) for k, v in dst.state_dict().items())

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(sources, "urlopen", offline)
    load_init_checkpoint(tiny(2), remote.as_uri())  # the cached file, no download


def test_official_names_resolve_through_the_cache_and_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path))
    urls = []

    def offline(url, *a, **k):
        urls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sources, "urlopen", offline)
    expected = tmp_path / "checkpoints" / "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"
    for name in ("rtdetrv2_r18vd_120e_coco", "RT-DETRv2-S", "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"):
        with pytest.raises(CheckpointError) as e:
            load_init_checkpoint(tiny(2), name)
        assert f"put it at\n  {expected}\n" in str(e.value)
    assert urls == ["https://github.com/lyuwenyu/storage/releases/download/v0.2/rtdetrv2_r18vd_120e_coco_rerun_48.1.pth"] * 3
    with pytest.raises(CheckpointError, match=r"checkpoints/MLLA_T\.pth"):
        load_init_checkpoint(tiny(2), "mlla_t_in1k")
    assert urls[-1] == "https://cloud.tsinghua.edu.cn/f/7a19712877cb4242889c/?dl=1"
    assert not list((tmp_path / "checkpoints").iterdir())  # no partial file left
    # a file put there by hand is used as it is
    expected.parent.mkdir(exist_ok=True)
    torch.save({"model": tiny(2).state_dict()}, expected)
    assert load_init_checkpoint(tiny(2), "rtdetrv2_r18vd_120e_coco")["format"] == "official RT-DETR"
    with pytest.raises(PathNotFoundError, match="did you mean rtdetrv2_r18vd_120e_coco"):
        load_init_checkpoint(tiny(2), "rtdetrv2_r18vd_120e_cocoo")


def test_google_drive_checkpoints_resolve_by_name_once_put_in_the_cache(tmp_path, monkeypatch):
    """The DEIM checkpoints have no direct download: their names never reach the network; the error
    names the Drive page and the cache path, and a file put there is used."""
    from mlla_rtdetr.model_zoo import ManualDownloadError

    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "urlopen", lambda *a, **k: pytest.fail("no download for a Drive-only file"))
    expected = tmp_path / "checkpoints" / "deim_dfine_hgnetv2_s_coco_120e.pth"
    for name in ("deim_dfine_hgnetv2_s_coco", "DEIM-D-FINE-S", "deim_dfine_hgnetv2_s_coco_120e.pth"):
        with pytest.raises(ManualDownloadError) as e:
            load_init_checkpoint(tiny(2), name)
        assert "drive.google.com/file/d/1tB8gVJNrfb6dhFvoHJECKOF5VpkthhfC/view" in str(e.value)
        assert f"put it at\n  {expected}\n" in str(e.value)
    expected.parent.mkdir(exist_ok=True)
    torch.save({"model": tiny(2).state_dict()}, expected)
    assert load_init_checkpoint(tiny(2), "DEIM-D-FINE-S")["format"] == "official RT-DETR"
    # D-FINE's files and ImageNet backbones have direct URLs
    dfine = "https://github.com/Peterande/storage/releases/download/dfinev1.0"
    assert sources.official_checkpoints()["dfine_hgnetv2_n_coco"] == ("dfine_n_coco.pth", f"{dfine}/dfine_n_coco.pth")
    assert sources.official_checkpoints()["pphgnetv2_b2_stage1"] == ("PPHGNetV2_B2_stage1.pth",
                                                                    f"{dfine}/PPHGNetV2_B2_stage1.pth")


class Custom:
    """Not a tensor or primitive: needs weights_only=False."""


def test_one_reader_for_every_checkpoint(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": OrderedDict(w=torch.zeros(1)), "args": Custom()}, path)
    with pytest.raises(CheckpointError, match="--unsafe-load"):
        read_checkpoint_file(path)
    assert isinstance(read_checkpoint_file(path, weights_only=False)["args"], Custom)
    (tmp_path / "empty.pth").write_bytes(b"")
    for weights_only in (True, False):
        with pytest.raises(CheckpointError, match="cannot be read: 0 bytes"):
            read_checkpoint_file(tmp_path / "empty.pth", weights_only=weights_only)


def test_finetune_recipe_is_the_coco_recipe_with_tuning_settings():
    from recipe_utils import load_recipe, recipe_without

    cfg, base = load_recipe("rtdetrv2_r18vd_finetune_36e.py"), load_recipe("rtdetrv2_r18vd_120e_coco.py")
    changed = ("train.init_checkpoint", "train.epochs", "dataloader.train.stop_aug_epoch", "optimizer.lr",
               "optimizer.params.rules", "lr_multiplier.warmup", "lr_multiplier.warmup_unit", "train.model_ema.decay",
               "train.model_ema.warmups", "train.output_dir", "dataloader.evaluator.output_dir")
    assert recipe_without(cfg, *changed) == recipe_without(base, *changed)
    assert (cfg.train.epochs, cfg.dataloader.train.stop_aug_epoch) == (36, 33)  # 117 of 120, scaled
    assert (base.train.epochs, base.dataloader.train.stop_aug_epoch) == (120, 117)
    assert cfg.optimizer.lr == base.optimizer.lr / 2 and cfg.optimizer.params.rules[0]["lr_mult"] == 0.1
    assert (cfg.lr_multiplier.warmup, cfg.lr_multiplier.warmup_unit) == (1, "epoch")
    assert sources.official_checkpoints()[cfg.train.init_checkpoint] == (
        "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth",
        "https://github.com/lyuwenyu/storage/releases/download/v0.2/rtdetrv2_r18vd_120e_coco_rerun_48.1.pth")


def test_make_shapes_dataset_writes_a_class_subset(tmp_path):
    import json

    from tools_utils import load_tool

    tool = load_tool("make_shapes_dataset")
    out = tmp_path / "shapes"
    assert tool.main(["--output", str(out), "--classes", "star,circle", "--rename", "circle=ball", "--num-train", "6",
                      "--num-val", "3", "--image-size", "64", "--max-objects", "4", "--seed", "3"]) == 0
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert train["categories"] == [{"id": 1, "name": "star", "supercategory": "shape"},
                                   {"id": 2, "name": "ball", "supercategory": "shape"}]
    assert len(train["images"]) == 6 and len(list((out / "train").glob("*.png"))) == 6
    assert train["annotations"] and {a["category_id"] for a in train["annotations"]} <= {1, 2}
    with pytest.raises(UserError, match="unknown \\[.hexagon.\\]"):  # exit status 2 from the tool
        tool.main(["--output", str(tmp_path / "other"), "--classes", "hexagon"])
