"""D-FINE / DEIM-D-FINE / DEIM-RT-DETRv2 model configs: every size has exactly the official
parameter count (``scripts/make_deim_float64_references.py --count-params`` builds each official
model from its YAML, ShihuaHuang95/DEIM @ a9aa4ad, and counts every registered parameter, D-FINE's
two fixed constants included), and the DEIM variants differ from their bases only by DEIM's
model changes. Built on the meta device (no weights are allocated).

The training recipes of every row equal the official YAMLs: every hyper-parameter, every
parameter's lr and weight decay, and the lr factor of the official flat-cosine formula."""
import math
import re

import pytest
import torch
from detectron2.config import instantiate

from mlla_rtdetr.engine import load_config

OFFICIAL_PARAMS = {
    "dfine_hgnetv2_n": 3_782_693,
    "dfine_hgnetv2_s": 10_321_877,
    "dfine_hgnetv2_m": 19_590_064,
    "dfine_hgnetv2_l": 31_244_152,
    "dfine_hgnetv2_x": 62_621_560,
    "deim_dfine_hgnetv2_n": 3_782_693,
    "deim_dfine_hgnetv2_s": 10_321_877,
    "deim_dfine_hgnetv2_m": 19_590_064,
    "deim_dfine_hgnetv2_l": 31_289_848,  # trainable BatchNorm in the backbone (D-FINE-L freezes it)
    "deim_dfine_hgnetv2_x": 62_715_480,
    "deim_rtdetrv2_r18vd": 20_183_440,
    "deim_rtdetrv2_r34vd": 31_440_644,
    "deim_rtdetrv2_r50vd_m": 33_198_864,  # 3 decoder layers (RT-DETRv2-M: 6)
    "deim_rtdetrv2_r50vd": 42_943_596,
    "deim_rtdetrv2_r101vd": 76_660_716,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_equals_official(name):
    with torch.device("meta"):
        model = instantiate(load_config(f"models/{name}.py").model)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize("size", "nsmlx")
def test_deim_dfine_differs_from_dfine_by_deim_changes_only(size):
    base = load_config(f"models/dfine_hgnetv2_{size}.py").model
    deim = load_config(f"models/deim_dfine_hgnetv2_{size}.py").model
    assert (deim.decoder.activation, deim.decoder.mlp_act) == ("silu", "silu")
    assert list(deim.criterion.losses) == ["mal", "boxes", "local"] and deim.criterion.gamma == 1.5
    assert (deim.backbone.freeze_at, deim.backbone.freeze_norm) == (-1, False)
    for key in ("encoder", "matcher"):
        node = base[key] if key in base else base.criterion[key]
        other = deim[key] if key in deim else deim.criterion[key]
        assert node == other
    for key in set(base.decoder) - {"activation", "mlp_act"}:
        assert base.decoder[key] == deim.decoder[key], key


def test_official_dfine_constants_are_checked_not_loaded():
    """Official D-FINE checkpoints store ``up`` / ``reg_scale`` under decoder. and decoder.decoder.:
    equal values convert (the model keeps its own), another size's reg_scale is a clear error."""
    from mlla_rtdetr.checkpoint.rtdetr_converter import CheckpointConversionError, convert_official_rtdetr

    model = instantiate(load_config("models/dfine_hgnetv2_n.py").model)
    official = {k: v.clone() for k, v in model.state_dict().items()}
    official["decoder.decoder.up"] = official["decoder.up"].clone()
    official["decoder.decoder.reg_scale"] = official["decoder.reg_scale"].clone()
    converted, report = convert_official_rtdetr(official, target=model)
    assert report.ok and set(converted) == set(model.state_dict())
    assert sorted(report.dropped_derived) == sorted(k for k in official if k.endswith(("up", "reg_scale")))
    official["decoder.reg_scale"] = torch.tensor([8.0])  # a D-FINE-X checkpoint
    official["decoder.decoder.reg_scale"] = torch.tensor([8.0])
    with pytest.raises(CheckpointConversionError, match=r"model.decoder.reg_scale=8"):
        convert_official_rtdetr(official, target=model)


# ----------------------------------------------------------------------------- recipes
# The official training hyper-parameters of every row, read off ShihuaHuang95/DEIM @ a9aa4ad
# (configs/deim_dfine/*.yml, configs/deim_rtdetrv2/*.yml with their includes: base/dataloader.yml,
# base/optimizer.yml / rt_optimizer.yml, base/dfine_hgnetv2.yml / rtdetrv2_r50vd.yml, base/deim.yml /
# rt_deim.yml). groups: the YAML's optimizer.params, in order: (regex, lr or None, weight_decay or None).
# Schedule: lrsheduler flatcosine (warmup_iter, flat_epoch, no_aug_epoch, lr_gamma). Data: the
# collate stop_epoch (multi-scale, EMA restart; D-FINE: also the augmentation policy's stop epoch),
# base_size_repeat (None: no multi-scale), Dense O2O policy epochs and mixup_epochs (DEIM only).
_BB = r"^(?=.*backbone)(?!.*norm|bn).*$"  # official spelling: in effect "backbone, no 'norm'"
_BB_NORM = r"^(?=.*backbone)(?=.*norm|bn).*$"
_ENC_DEC_NORM = r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$"
_ENC_DEC_NORM_BIAS = r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$"
_NORM = r"^(?=.*(?:norm|bn)).*$"
_DFINE_NSM = lambda bb: [(_BB, bb, None), (_BB_NORM, bb, 0.0), (_ENC_DEC_NORM_BIAS, None, 0.0)]  # noqa: E731
_DFINE = dict(warmup_iter=500, flat_epoch=4000000, no_aug_epoch=0, lr_gamma=1.0, ema_warmups=1000, batch=32,
              policy=None, mixup=None, restart_decay=0.9999)
_DEIM_DFINE = dict(warmup_iter=2000, lr_gamma=0.5, ema_warmups=1000, batch=32, restart_decay=0.9999)
_DEIM_RT = dict(warmup_iter=2000, lr_gamma=0.5, ema_warmups=2000, batch=16, restart_decay=0.9999, repeat=3)
OFFICIAL_RECIPES = {
    "dfine_hgnetv2_n_coco": dict(_DFINE, model="dfine_hgnetv2_n", epochs=160, batch=128, lr=8e-4, wd=1e-4,
                                 groups=_DFINE_NSM(4e-4), stop=148, repeat=None),
    "dfine_hgnetv2_s_coco": dict(_DFINE, model="dfine_hgnetv2_s", epochs=132, lr=2e-4, wd=1e-4,
                                 groups=_DFINE_NSM(1e-4), stop=120, repeat=20),
    "dfine_hgnetv2_m_coco": dict(_DFINE, model="dfine_hgnetv2_m", epochs=132, lr=2e-4, wd=1e-4,
                                 groups=_DFINE_NSM(2e-5), stop=120, repeat=6),
    "dfine_hgnetv2_l_coco": dict(_DFINE, model="dfine_hgnetv2_l", epochs=80, lr=2.5e-4, wd=1.25e-4,
                                 groups=[(_BB, 1.25e-5, None), (_ENC_DEC_NORM, None, 0.0)], stop=72, repeat=4),
    "dfine_hgnetv2_x_coco": dict(_DFINE, model="dfine_hgnetv2_x", epochs=80, lr=2.5e-4, wd=1.25e-4,
                                 groups=[(_BB, 2.5e-6, None), (_ENC_DEC_NORM, None, 0.0)], stop=72, repeat=3,
                                 restart_decay=0.9998),
    "deim_dfine_hgnetv2_n_coco": dict(_DEIM_DFINE, model="deim_dfine_hgnetv2_n", epochs=160, batch=128, lr=8e-4,
                                      wd=1e-4, groups=_DFINE_NSM(4e-4), flat_epoch=7800, no_aug_epoch=12,
                                      lr_gamma=1.0, policy=[4, 78, 148], mixup=[4, 78], stop=148, repeat=None),
    "deim_dfine_hgnetv2_s_coco": dict(_DEIM_DFINE, model="deim_dfine_hgnetv2_s", epochs=132, lr=4e-4, wd=1e-4,
                                      groups=[(r"^(?=.*backbone)(?!.*bn).*$", 2e-4, None), (_NORM, None, 0.0)],
                                      flat_epoch=64, no_aug_epoch=12, policy=[4, 64, 120], mixup=[4, 64], stop=120,
                                      repeat=20),
    "deim_dfine_hgnetv2_m_coco": dict(_DEIM_DFINE, model="deim_dfine_hgnetv2_m", epochs=102, lr=4e-4, wd=1e-4,
                                      groups=[(r"^(?=.*backbone)(?!.*bn).*$", 4e-5, None), (_NORM, None, 0.0)],
                                      flat_epoch=49, no_aug_epoch=12, policy=[4, 49, 90], mixup=[4, 49], stop=90,
                                      repeat=6),
    "deim_dfine_hgnetv2_l_coco": dict(_DEIM_DFINE, model="deim_dfine_hgnetv2_l", epochs=58, lr=5e-4, wd=1.25e-4,
                                      groups=[(_BB, 2.5e-5, None), (_ENC_DEC_NORM, None, 0.0)], flat_epoch=29,
                                      no_aug_epoch=8, policy=[4, 29, 50], mixup=[4, 29], stop=50, repeat=4),
    "deim_dfine_hgnetv2_x_coco": dict(_DEIM_DFINE, model="deim_dfine_hgnetv2_x", epochs=58, lr=5e-4, wd=1.25e-4,
                                      groups=[(_BB, 5e-6, None), (_ENC_DEC_NORM, None, 0.0)], flat_epoch=29,
                                      no_aug_epoch=8, policy=[4, 29, 50], mixup=[4, 29], stop=50, repeat=3,
                                      restart_decay=0.9998),
    "deim_rtdetrv2_r18vd_120e_coco": dict(_DEIM_RT, model="deim_rtdetrv2_r18vd", epochs=120, lr=2e-4, wd=1e-4,
                                          groups=[(_NORM, None, 0.0)], flat_epoch=64, no_aug_epoch=3,
                                          policy=[4, 64, 117], mixup=[4, 64], stop=117),
    "deim_rtdetrv2_r34vd_120e_coco": dict(_DEIM_RT, model="deim_rtdetrv2_r34vd", epochs=120, lr=2e-4, wd=1e-4,
                                          groups=[(r"^(?=.*backbone)(?!.*norm).*$", 1e-4, None), (_NORM, None, 0.0)],
                                          flat_epoch=64, no_aug_epoch=3, policy=[4, 64, 117], mixup=[4, 64], stop=117),
    "deim_rtdetrv2_r50vd_m_60e_coco": dict(_DEIM_RT, model="deim_rtdetrv2_r50vd_m", epochs=60, lr=2e-4, wd=1e-4,
                                           groups=[(r"^(?=.*backbone)(?!.*norm).*$", 2e-5, None), (_NORM, None, 0.0)],
                                           flat_epoch=34, no_aug_epoch=2, policy=[4, 34, 58], mixup=[4, 34], stop=58),
    "deim_rtdetrv2_r50vd_60e_coco": dict(_DEIM_RT, model="deim_rtdetrv2_r50vd", epochs=60, lr=2e-4, wd=1e-4,
                                         groups=[(r"^(?=.*backbone)(?!.*norm).*$", 2e-5, None), (_NORM, None, 0.0)],
                                         flat_epoch=34, no_aug_epoch=2, policy=[4, 34, 58], mixup=[4, 34], stop=58),
    "deim_rtdetrv2_r101vd_60e_coco": dict(_DEIM_RT, model="deim_rtdetrv2_r101vd", epochs=60, lr=2e-4, wd=1e-4,
                                          groups=[(_BB, 2e-6, None), (_NORM, None, 0.0)], flat_epoch=34,
                                          no_aug_epoch=2, policy=[4, 34, 58], mixup=[4, 34], stop=58),
}

# hgnetv2.py / presnet.py of the official code: the file each backbone's `pretrained: True` loads
OFFICIAL_IMAGENET = {
    **{f"B{i}": f"PPHGNetV2_B{i}_stage1.pth" for i in range(7)},
    "R18": "ResNet18_vd_pretrained_from_paddle.pth", "R34": "ResNet34_vd_pretrained_from_paddle.pth",
    "R50": "ResNet50_vd_ssld_v2_pretrained_from_paddle.pth", "R101": "ResNet101_vd_ssld_pretrained_from_paddle.pth",
}


def official_param_groups(names, groups, lr, weight_decay):
    """name -> (lr, weight_decay) the way the official ``get_optim_params`` assigns them: each YAML
    group takes every name its regex finds (a name in two groups is an error there), the rest keep
    the defaults."""
    out = {}
    for name in names:
        hits = [g for g in groups if re.findall(g[0], name)]
        assert len(hits) <= 1, f"{name} is in {len(hits)} official groups"
        g_lr, g_wd = (hits[0][1], hits[0][2]) if hits else (None, None)
        out[name] = (lr if g_lr is None else g_lr, weight_decay if g_wd is None else g_wd)
    return out


def official_scales(repeat, base=640):
    """The official ``generate_scales(base_size, base_size_repeat)`` collate sizes."""
    low, high = int(base * 0.75 / 32) * 32, int(base * 1.25 / 32) * 32
    n = (base - low) // 32
    return [low + 32 * i for i in range(n)] + [base] * repeat + [high - 32 * i for i in range(n)]


def _our_groups(cfg, model):
    cfg.optimizer.params.model = model
    return {n: (g["lr"], g["weight_decay"]) for g in instantiate(cfg.optimizer.params) for n in g["names"]}


@pytest.mark.parametrize("recipe", sorted(OFFICIAL_RECIPES))
def test_recipe_equals_the_official_yaml(recipe):
    from test_deim_training import official_flat_cosine

    from mlla_rtdetr.config import instantiate_on_meta
    from mlla_rtdetr.data import DenseO2ODatasetMapper, RTDETRDatasetMapper
    from mlla_rtdetr.model_zoo import IMAGENET_WEIGHTS, zoo_entry

    o = OFFICIAL_RECIPES[recipe]
    cfg = load_config(f"{recipe}.py")
    model = instantiate_on_meta(cfg.model)
    entry = zoo_entry(recipe)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[o["model"]] == entry.params
    assert load_config(f"models/{o['model']}.py").model == cfg.model
    # the official `pretrained` ImageNet file of the YAML's backbone (HGNetv2 name / PResNet depth)
    backbone = cfg.model.backbone.get("name") or f"R{cfg.model.backbone.depth}"
    assert entry.train_init == IMAGENET_WEIGHTS[entry.backbone] == OFFICIAL_IMAGENET[backbone]

    # optimizer: AdamW, defaults and every trainable parameter's (lr, weight decay)
    assert cfg.optimizer._target_ is torch.optim.AdamW and tuple(cfg.optimizer.betas) == (0.9, 0.999)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (o["lr"], o["wd"])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert _our_groups(cfg, model) == official_param_groups(names, o["groups"], o["lr"], o["wd"])

    # schedule: the official flatcosine factor at every 7th iteration (100 iterations an epoch)
    ipe, epochs = 100, o["epochs"]
    assert cfg.train.epochs == epochs and cfg.train.max_iter is None
    cfg.lr_multiplier.max_iter, cfg.lr_multiplier.iters_per_epoch = ipe * epochs, ipe
    sched = instantiate(cfg.lr_multiplier)
    for it in range(0, ipe * epochs, 7):
        expected = official_flat_cosine(it, ipe * epochs, o["warmup_iter"], ipe * o["flat_epoch"],
                                        ipe * o["no_aug_epoch"], 1.0, o["lr_gamma"])
        assert sched.value_at_iter(it) == pytest.approx(expected, rel=1e-12, abs=1e-15), it

    # data
    train = cfg.dataloader.train
    assert train.total_batch_size == o["batch"]
    assert tuple(train.mapper.image_size) == (640, 640) and tuple(cfg.dataloader.test.mapper.image_size) == (640, 640)
    assert list(cfg.model.decoder.eval_spatial_size) == [640, 640]
    scales = None if o["repeat"] is None else official_scales(o["repeat"])
    if o["policy"] is None:  # D-FINE: the RT-DETR pipeline, augmentation and multi-scale stop together
        assert train.mapper._target_ is RTDETRDatasetMapper and train.get("batch_augment") is None
        assert train.stop_aug_epoch == o["stop"]
        assert (None if train.multiscale_sizes is None else instantiate(train.multiscale_sizes)) == scales
    else:  # DEIM: Dense O2O
        assert train.mapper._target_ is DenseO2ODatasetMapper and train.stop_aug_epoch is None
        assert list(train.mapper.policy_epochs) == o["policy"] and train.mapper.mosaic_prob == 0.5
        aug = train.batch_augment
        assert list(aug.mixup_epochs) == o["mixup"] and aug.mixup_prob == 0.5 and aug.multiscale_stop_epoch == o["stop"]
        assert train.multiscale_sizes is None
        assert (None if aug.multiscale_sizes is None else instantiate(aug.multiscale_sizes)) == scales

    # EMA (restarted at the collate stop epoch), clipping, AMP
    ema = cfg.train.model_ema
    assert (ema.enabled, ema.decay, ema.warmups) == (True, 0.9999, o["ema_warmups"])
    assert (ema.restart_epoch, ema.restart_decay) == (o["stop"], o["restart_decay"])
    assert cfg.train.clip_grad.enabled and cfg.train.clip_grad.max_norm == 0.1 and cfg.train.amp.enabled
    assert cfg.train.output_dir == f"./output/{recipe}"


@pytest.mark.parametrize("case, recipe", [("deim_rtdetrv2_r18vd", "deim_rtdetrv2_r18vd_120e_coco"),
                                          ("deim_dfine_hgnetv2_s", "deim_dfine_hgnetv2_s_coco"),
                                          ("dfine_hgnetv2_n", "dfine_hgnetv2_n_coco")])
def test_recipe_groups_on_the_official_parameter_names(parity_dir, case, recipe):
    """The official YAML groups applied to the official model's own parameter names (the parity
    manifests list them) hold as many elements at each (lr, weight decay) as ours do."""
    import json
    from collections import Counter

    from mlla_rtdetr.config import instantiate_on_meta

    o = OFFICIAL_RECIPES[recipe]
    rows = json.loads((parity_dir / "fixtures" / f"{case}.manifest.json").read_text())["rows"]
    # D-FINE's fixed up / reg_scale are parameters without gradient: no optimizer group has them
    rows = [r for r in rows if r["kind"] == "param" and not r["key"].endswith((".up", ".reg_scale"))]
    official = official_param_groups([r["key"] for r in rows], o["groups"], o["lr"], o["wd"])
    expected = Counter()
    for r in rows:
        expected[official[r["key"]]] += math.prod(r["shape"])
    cfg = load_config(f"{recipe}.py")
    model = instantiate_on_meta(cfg.model)
    numel = dict(model.named_parameters())
    ours = Counter()
    for name, group in _our_groups(cfg, model).items():
        ours[group] += numel[name].numel()
    assert ours == expected and len(ours) >= 2


# official_gflops of our models at 640 (as trained; the model-zoo README's "GFLOPs, ours" column)
# and, for the D-FINE architectures, after deploy(): the published D-FINE numbers count the deployed
# model, and the deployed count rounds to them.
OURS_GFLOPS = {
    "dfine_hgnetv2_n": (7.11, 7.10), "dfine_hgnetv2_s": (25.23, 25.06), "dfine_hgnetv2_m": (57.82, 56.51),
    "dfine_hgnetv2_l": (92.87, 90.90), "dfine_hgnetv2_x": (206.72, 202.29),
    "deim_rtdetrv2_r18vd": (61.05, 60.06), "deim_rtdetrv2_r34vd": (93.06, 92.08),
    "deim_rtdetrv2_r50vd_m": (100.16, 99.17), "deim_rtdetrv2_r50vd": (137.06, 133.13),
    "deim_rtdetrv2_r101vd": (259.77, 250.92),
}


@pytest.mark.parametrize("name", ["dfine_hgnetv2_n", "dfine_hgnetv2_s", "deim_rtdetrv2_r18vd"] + [
    pytest.param(n, marks=pytest.mark.slow) for n in sorted(OURS_GFLOPS)
    if n not in ("dfine_hgnetv2_n", "dfine_hgnetv2_s", "deim_rtdetrv2_r18vd")])
def test_official_gflops_of_the_dfine_and_deim_models(name):
    from mlla_rtdetr.model_zoo import MODEL_ZOO
    from mlla_rtdetr.utils.flops import official_gflops

    torch.manual_seed(0)
    model = instantiate(load_config(f"models/{name}.py").model).eval()
    trained, deployed = OURS_GFLOPS[name]
    assert round(official_gflops(model, 640, 640), 2) == trained
    with torch.no_grad():
        model.deploy()
    assert round(official_gflops(model, 640, 640), 2) == deployed
    published = {e.gflops for e in MODEL_ZOO if e.recipe.startswith((name, name.replace("dfine", "deim_dfine")))}
    if name.startswith("dfine"):  # DEIM-D-FINE: same architecture, same count
        assert published == {round(deployed)}


def test_dfine_imagenet_file_starts_the_backbone(tmp_path, parity_dir):
    """``train.init_checkpoint=PPHGNetV2_B0_stage1.pth`` (D-FINE's ImageNet B0: the backbone's own
    keys, as the official parity manifest names them) loads into the D-FINE-N / -S backbone."""
    import json

    from mlla_rtdetr.engine import load_init_checkpoint
    from parity_state import load_manifest, make_state

    manifest = parity_dir / "fixtures" / "dfine_hgnetv2_n.manifest.json"
    state = make_state(load_manifest(str(manifest)), seed=json.loads(manifest.read_text())["state_seed"])
    path = tmp_path / "PPHGNetV2_B0_stage1.pth"
    torch.save({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}, path)
    for name in ("dfine_hgnetv2_n", "deim_dfine_hgnetv2_s"):
        torch.manual_seed(0)
        model = instantiate(load_config(f"models/{name}.py").model)
        decoder_before = model.decoder.enc_score_head.weight.clone()
        report = load_init_checkpoint(model, str(path))
        assert report["format"] == "official hgnetv2 ImageNet backbone"
        assert torch.equal(model.backbone.body.stem.stem1.conv.weight, state["backbone.stem.stem1.conv.weight"])
        assert torch.equal(model.backbone.body.stem.stem1.lab.scale, state["backbone.stem.stem1.lab.scale"])
        assert torch.equal(model.decoder.enc_score_head.weight, decoder_before)


@pytest.mark.slow
def test_readme_training_command_of_deim_dfine_s(tmp_path, repo_root, parity_dir):
    """The model-zoo README's DEIM-D-FINE-S training command, from D-FINE's ImageNet B0 file, for 2
    iterations on the embedded data in the Mosaic / MixUp stage (sizes shrunk by overrides)."""
    import json
    import subprocess

    from data_utils import synthetic_val_subset
    from parity_state import load_manifest, make_state
    from tools_utils import zoo_readme_command

    manifest = parity_dir / "fixtures" / "deim_dfine_hgnetv2_s.manifest.json"
    state = make_state(load_manifest(str(manifest)), seed=json.loads(manifest.read_text())["state_seed"])
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    torch.save(backbone, tmp_path / "PPHGNetV2_B0_stage1.pth")
    json_file, image_root = synthetic_val_subset(tmp_path, 2)
    out = tmp_path / "out"
    cmd = zoo_readme_command("deim_dfine_hgnetv2_s_coco", eval_only=False, weights_dir=tmp_path)
    cmd += ["model.num_classes=5", "dataloader.train.dataset.names=synthetic_shapes_train",
            "dataloader.test.dataset.names=deim_recipe_e2e_val", f"dataloader.test.dataset.json_file={json_file}",
            f"dataloader.test.dataset.image_root={image_root}", "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0", "dataloader.train.mapper.image_size=[128,128]",
            "dataloader.train.mapper.mosaic_output_size=64", "dataloader.train.mapper.mosaic_prob=1.0",
            "dataloader.train.mapper.policy_epochs=[0,1,2]", "dataloader.train.batch_augment.mixup_epochs=[0,1]",
            "dataloader.train.batch_augment.mixup_prob=1.0", "dataloader.train.batch_augment.multiscale_sizes.base=128",
            "dataloader.train.batch_augment.multiscale_sizes.min_size=96",
            "dataloader.train.batch_augment.multiscale_sizes.max_size=160",
            "dataloader.test.mapper.image_size=[128,128]", "dataloader.test.num_workers=0",
            "model.encoder.eval_spatial_size=[128,128]", "model.decoder.eval_spatial_size=[128,128]",
            "train.max_iter=2", "lr_multiplier.warmup=1", "train.amp.enabled=false", "train.device=cpu",
            f"train.output_dir={out}"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "official hgnetv2 ImageNet backbone" in (out / "log.txt").read_text()
    trained = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    stem = "stem.stem1.conv.weight"  # trainable in DEIM: moved by the two AdamW steps
    assert trained["backbone.body." + stem].shape == backbone[stem].shape
    assert not torch.equal(trained["backbone.body." + stem], backbone[stem])
    assert (trained["backbone.body." + stem] - backbone[stem]).abs().max() < 1e-2
    results = json.loads((out / "metrics.json").read_text().splitlines()[-1])
    assert any(k.startswith("bbox_ema/") for k in results), sorted(results)[:10]
