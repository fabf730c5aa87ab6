"""Engine unit tests on a tiny stand-in detector (fast; the real model is covered in test_engine_e2e)."""
import json
import math
import os

import pytest
import torch
from torch import nn

from detectron2.config import instantiate
from detectron2.solver import LRMultiplier

from engine_utils import CLASSES, ToyDetector, ToyTrainLoader, register_toy, render, toy_config, toy_dicts
from mlla_rtdetr.config import get_config
from mlla_rtdetr.engine import (
    ConfigError,
    InitCheckpointError,
    ModelEMA,
    NonFiniteLossError,
    Trainer,
    UnknownConfigKeyError,
    apply_overrides,
    check_num_classes,
    do_eval_only,
    do_test,
    do_train,
    get_param_groups,
    load_config,
    load_init_checkpoint,
    lr_schedule,
    prepare_data,
)
from mlla_rtdetr.engine import checkpointer as ckpt_mod
from mlla_rtdetr.data import FastCOCOEvaluator
from mlla_rtdetr.engine.optim import RTDETR_V2_RULES
from mlla_rtdetr.errors import CheckpointError, PathNotFoundError


# ----------------------------------------------------------------------------- schedules
def test_rtdetr_linear_warmup_then_constant():
    s = lr_schedule("constant", warmup=4, warmup_unit="iter", max_iter=10)
    assert [s.value_at_iter(i) for i in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])


def test_multistep_milestones_in_epochs_and_lr_multiplier():
    s = lr_schedule("multistep", milestones=[2, 3], unit="epoch", gamma=0.1, warmup=0,
                    max_iter=50, iters_per_epoch=10)
    assert s.milestones == [20, 30]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LRMultiplier(opt, s, max_iter=50)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[19] == pytest.approx(1.0) and lrs[20] == pytest.approx(0.1)
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01)


def test_cosine_and_flat_cosine():
    c = lr_schedule("cosine", min_factor=0.1, max_iter=100)
    assert c.value_at_iter(0) == pytest.approx(1.0)
    assert c.value_at_iter(50) == pytest.approx(0.55)
    assert c.value_at_iter(100) == pytest.approx(0.1)
    f = lr_schedule("flat_cosine", flat=2, unit="epoch", min_factor=0.0, max_iter=100, iters_per_epoch=25)
    assert f.value_at_iter(49) == 1.0
    assert f.value_at_iter(75) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="iters_per_epoch"):
        lr_schedule("multistep", milestones=[1], unit="epoch", max_iter=10)


# ----------------------------------------------------------------------------- param groups
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.decoder = nn.Linear(4, 4)


def _groups(**kw):
    out = {}
    for g in get_param_groups(_Net(), base_lr=1e-4, weight_decay=1e-4, **kw):
        for n in g["names"]:
            out[n] = (g["lr"], g["weight_decay"])
    return out


def test_param_groups_backbone_multiplier_and_no_decay_on_norm_bias():
    g = _groups(backbone_lr_multiplier=0.1)
    assert g["backbone.0.weight"] == pytest.approx((1e-5, 1e-4))
    assert g["backbone.0.bias"] == pytest.approx((1e-5, 0.0))
    assert g["backbone.1.weight"] == pytest.approx((1e-5, 0.0))
    assert g["encoder.1.weight"] == pytest.approx((1e-4, 0.0))  # LayerNorm by module type
    assert g["decoder.weight"] == pytest.approx((1e-4, 1e-4))


def test_param_groups_official_v2_rules_first_match():
    g = _groups(weight_decay_norm=None, weight_decay_bias=None, rules=RTDETR_V2_RULES, strict_rules=False)
    # v2: backbone params whose name lacks "norm" get 0.1 lr; "encoder.1" has no "norm" in its name
    assert g["backbone.1.weight"] == pytest.approx((1e-5, 1e-4))
    assert g["encoder.1.weight"] == pytest.approx((1e-4, 1e-4))
    g = _groups(rules=[dict(pattern=r"^decoder\.", lr=3e-3, weight_decay=0.5), dict(pattern="decoder", lr=9.0)],
                strict_rules=False)  # the 2nd rule is shadowed: first match wins
    assert g["decoder.weight"] == pytest.approx((3e-3, 0.5)) and g["decoder.bias"] == pytest.approx((3e-3, 0.5))
    with pytest.raises(ValueError, match="matched no trainable parameter"):
        _groups(rules=[dict(pattern="nothing_here", lr=1.0)])


def test_common_optim_configs_instantiate():
    o = get_config("common/optim.py")
    for name in ("AdamW", "AdamW_rtdetr_v1", "AdamW_rtdetr_v2", "AdamW_rtdetr_v2_r18"):
        c = o[name]
        c.params.model = _Net()
        opt = instantiate(c)
        assert sum(len(g["params"]) for g in opt.param_groups) == len(list(_Net().parameters()))


# ----------------------------------------------------------------------------- EMA
def test_ema_rtdetr_warmup_decay_and_state():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.9, warmups=10)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d1 = 0.9 * (1 - math.exp(-1 / 10))
    assert ema.module.weight[0, 0].item() == pytest.approx(1 - d1)
    ema.update(model)
    d2 = 0.9 * (1 - math.exp(-2 / 10))
    assert ema.module.weight[0, 0].item() == pytest.approx(d2 * (1 - d1) + (1 - d2))
    other = ModelEMA(nn.Linear(2, 1, bias=False), decay=0.9, warmups=10)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 2 and torch.equal(other.module.weight, ema.module.weight)


# ----------------------------------------------------------------------------- overrides
def test_unknown_override_key_names_closest():
    cfg = toy_config("/tmp/unused")
    with pytest.raises(UnknownConfigKeyError, match=r"train\.max_iters.*train\.max_iter"):
        apply_overrides(cfg, ["train.max_iters=5"])
    with pytest.raises(UnknownConfigKeyError, match=r"model\.num_clases.*model\.num_classes"):
        apply_overrides(cfg, ["model.num_clases=3"])
    # a constructor argument the recipe did not spell out is a valid key
    apply_overrides(cfg, ["model.nan_after=3", "train.max_iter=7", "+train.extra=1"])
    assert cfg.model.nan_after == 3 and cfg.train.max_iter == 7 and cfg.train.extra == 1


# ----------------------------------------------------------------------------- trainer pieces
def test_amp_fp16_unscales_before_clipping_on_cpu():
    torch.manual_seed(0)
    model = ToyDetector()
    data = [render(d) for d in toy_dicts("x", 4)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    trainer = Trainer(model, iter([data] * 3), opt, amp=True, amp_dtype="float16", device_type="cpu",
                      clip_grad=dict(max_norm=0.1))
    assert trainer.grad_scaler.is_enabled() and trainer.grad_scaler.get_scale() > 1
    from detectron2.utils.events import EventStorage

    with EventStorage(0) as trainer.storage:
        trainer.iter = 0
        trainer.run_step()
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    assert norm.item() <= 0.1 + 1e-4  # clipped in unscaled units (scaled grads would be ~1e4 larger)
    assert "grad_scaler" in trainer.state_dict()


def test_fast_coco_evaluator_matches_pycocotools(tmp_path):
    name = register_toy("engine_eval_check", 12, seed=3)
    model = ToyDetector().eval()
    inputs = [render(d) for d in toy_dicts(name, 12, seed=3)]
    with torch.no_grad():
        outputs = model(inputs)
    aps = {}
    for backend in ("faster_coco_eval", "pycocotools"):
        ev = FastCOCOEvaluator(name, output_dir=str(tmp_path), distributed=False, backend=backend)
        ev.reset()
        ev.process(inputs, outputs)
        aps[backend] = ev.evaluate()["bbox"]
    assert aps["faster_coco_eval"]["AP"] == pytest.approx(aps["pycocotools"]["AP"], abs=1e-9)
    assert aps["faster_coco_eval"]["AP50"] == pytest.approx(aps["pycocotools"]["AP50"], abs=1e-9)


# ----------------------------------------------------------------------------- full loop (toy)
def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_checkpoints_eval_names_and_eval_only(tmp_path):
    out = str(tmp_path / "run")
    cfg = toy_config(out)
    results = do_train(cfg)
    files = sorted(os.listdir(out))
    periodic = [f for f in files if f.startswith("model_00")]
    assert periodic == ["model_0000009.pth", "model_0000014.pth"]  # max_to_keep=2 of 4, 9, 14
    for f in ("model_final.pth", "model_best.pth", "last_checkpoint", "config.yaml", "metrics.json"):
        assert f in files
    assert not [f for f in files if f.startswith(".tmp_")]
    assert set(results) == {"bbox", "bbox_ema", "images", "images_ema"}  # raw and EMA under distinct names
    assert results["images_ema"] == {"evaluated": 16, "skipped": 0}
    final = _state(os.path.join(out, "model_final.pth"))  # weights_only loadable
    assert {"model", "trainer", "ema"} <= set(final)
    assert final["trainer"]["iteration"] == 19 and final["ema"]["updates"] == 20
    assert "optimizer" in final["trainer"] and "hooks" in final["trainer"]
    assert final["metrics"]["bbox_ema/AP"] == pytest.approx(results["bbox_ema"]["AP"])
    best = _state(os.path.join(out, "model_best.pth"))
    assert best["best_metric"] == "bbox_ema/AP"
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.json"))]
    evals = [l for l in lines if "bbox_ema/AP" in l]
    assert [l["iteration"] for l in evals] == [9, 20]  # detectron2 logs after_train at max_iter
    assert evals[-1]["bbox/AP"] == pytest.approx(results["bbox"]["AP"])
    assert max(l["bbox_ema/AP"] for l in evals) == pytest.approx(best["best_value"])
    # --eval-only on the final checkpoint reproduces its AP (raw and EMA)
    cfg2 = toy_config(str(tmp_path / "eval"))
    cfg2.train.init_checkpoint = os.path.join(out, "model_final.pth")
    again = do_eval_only(cfg2)
    assert again["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"], abs=1e-9)
    assert again["bbox_ema"]["AP"] == pytest.approx(results["bbox_ema"]["AP"], abs=1e-9)


def test_killed_run_resumes_exactly(tmp_path):
    ref_dir, cut_dir = str(tmp_path / "ref"), str(tmp_path / "cut")
    do_train(toy_config(ref_dir))
    cfg = toy_config(cut_dir)
    cfg.dataloader.train.crash_at = 12  # dies after the checkpoint of iteration 9
    with pytest.raises(KeyboardInterrupt):
        do_train(cfg)
    assert open(os.path.join(cut_dir, "last_checkpoint")).read().strip() == "model_0000009.pth"
    assert not os.path.exists(os.path.join(cut_dir, "model_final.pth"))
    do_train(toy_config(cut_dir), resume=True)
    ref, cut = _state(os.path.join(ref_dir, "model_final.pth")), _state(os.path.join(cut_dir, "model_final.pth"))
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], cut["model"][k]), k
    for k in ref["ema"]["module"]:
        assert torch.equal(ref["ema"]["module"][k], cut["ema"]["module"][k]), k
    assert ref["trainer"]["optimizer"]["param_groups"][0]["lr"] == cut["trainer"]["optimizer"]["param_groups"][0]["lr"]


def test_fixed_seed_reproducible(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for d in (a, b):
        cfg = toy_config(d)
        cfg.train.max_iter, cfg.train.eval_period, cfg.train.checkpointer.period = 6, 0, 0
        cfg.train.checkpointer.best_metric = None
        cfg.dataloader.evaluator.output_dir = d
        do_train(cfg)
    sa, sb = _state(os.path.join(a, "model_final.pth")), _state(os.path.join(b, "model_final.pth"))
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_nan_loss_stops_with_iteration_and_terms(tmp_path):
    out = str(tmp_path / "nan")
    cfg = toy_config(out)
    cfg.model.nan_after = 7  # iteration 7 (0-based) is the 8th step
    with pytest.raises(NonFiniteLossError, match=r"iteration 7.*loss_cls"):
        do_train(cfg)
    assert open(os.path.join(out, "last_checkpoint")).read().strip() == "model_0000004.pth"
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    good = _state(os.path.join(out, "model_0000004.pth"))
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.dtype.is_floating_point)


def test_atomic_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = ToyDetector()
    ck = ckpt_mod.Checkpointer(model, str(tmp_path))
    ck.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        ck.save("model_final")
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]


def test_init_checkpoint_shape_mismatch_table_and_key_report(tmp_path):
    path = str(tmp_path / "w.pth")
    src = ToyDetector(num_classes=2).state_dict()
    src["extra.weight"] = torch.zeros(1)
    del src["backbone.0.bias"]
    torch.save({"model": src}, path)
    report = load_init_checkpoint(ToyDetector(num_classes=2), path)
    assert report["missing"] == ["backbone.0.bias"] and report["unexpected"] == ["extra.weight"]
    with pytest.raises(InitCheckpointError) as e:
        load_init_checkpoint(ToyDetector(num_classes=3), path)
    msg = str(e.value)
    assert "head.weight" in msg and "(6, 32)" in msg and "(7, 32)" in msg and "head.bias" in msg


def test_unreadable_checkpoints_are_checkpoint_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": ToyDetector(num_classes=2).state_dict()}, good)
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    for name in ("truncated", "empty", "text"):
        with pytest.raises(CheckpointError, match=rf"'.*{name}.pth' cannot be read: \d+ bytes .* truncated, empty"):
            load_init_checkpoint(ToyDetector(num_classes=2), str(tmp_path / f"{name}.pth"))
    with pytest.raises(PathNotFoundError, match="'.*missing.pth' does not exist"):
        load_init_checkpoint(ToyDetector(num_classes=2), str(tmp_path / "missing.pth"))

    # --resume from a last_checkpoint that names a damaged file says how to take an earlier one
    checkpointer = ckpt_mod.Checkpointer(ToyDetector(num_classes=2), str(tmp_path))
    (tmp_path / "last_checkpoint").write_text("truncated.pth")
    with pytest.raises(CheckpointError, match="named in .*last_checkpoint .* write the name of an earlier"):
        checkpointer.load(checkpointer.get_checkpoint_file())
    (tmp_path / "last_checkpoint").write_text("gone.pth")
    with pytest.raises(PathNotFoundError, match="gone.pth' does not exist(.|\n)*write the name of an earlier"):
        checkpointer.load(checkpointer.get_checkpoint_file())


def test_class_count_mismatch_names_each_source(tmp_path):
    cfg = toy_config(str(tmp_path))  # datasets registered in Python
    classes = prepare_data(cfg)
    assert classes == {"dataloader.train.dataset": CLASSES, "dataloader.test.dataset": CLASSES}
    check_num_classes(cfg, ToyDetector(num_classes=len(CLASSES)), classes)
    with pytest.raises(ConfigError, match=r"model\.num_classes=3, but dataloader.train.dataset and "
                                          r"dataloader.test.dataset have 2 classes \(a, b\)"):
        check_num_classes(cfg, ToyDetector(num_classes=3), classes)
    cfg.model.num_classes = 4
    with pytest.raises(ConfigError, match="model.num_classes=4(.|\n)*override:\n  model.num_classes=2$"):
        prepare_data(cfg)


def test_init_checkpoint_detects_official_rtdetr_layout(tmp_path):
    cfg = load_config("rtdetr_tiny_synthetic.py")
    torch.manual_seed(0)
    src = instantiate(cfg.model)
    path = str(tmp_path / "official.pth")
    # official RT-DETR training checkpoints keep the EMA weights under ema.module
    torch.save({"ema": {"module": src.state_dict(), "updates": 5}, "last_epoch": 3}, path)
    torch.manual_seed(1)
    dst = instantiate(cfg.model)
    report = load_init_checkpoint(dst, path, ModelEMA(dst))
    assert report["format"] == "official RT-DETR" and report["ema"] == "reset from the loaded model"
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k


class _MatcherNaNDetector(ToyDetector):
    """Fails like the Hungarian matcher does when predictions turn NaN (before any loss exists)."""

    def forward(self, batched):
        if self.training and self.nan_after is not None and int(self.steps) >= self.nan_after:
            raise FloatingPointError("HungarianMatcher: non-finite matching cost")
        return super().forward(batched)


def test_nan_in_forward_stops_with_iteration(tmp_path):
    out = str(tmp_path / "nan_fwd")
    cfg = toy_config(out)
    cfg.model._target_ = _MatcherNaNDetector
    cfg.model.nan_after = 6
    with pytest.raises(NonFiniteLossError, match=r"iteration 6 .*forward pass.*non-finite matching cost"):
        do_train(cfg)
    assert open(os.path.join(out, "last_checkpoint")).read().strip() == "model_0000004.pth"


def test_data_seed_follows_train_seed_unless_set(tmp_path):
    """Recipes leave dataloader.train.seed=None: a train.seed sweep then also varies data order."""
    for name in ("common/data/synthetic_detection.py", "common/data/coco_detection.py"):
        assert get_config(name).dataloader.train.seed is None
    seen = []

    class RecordingLoader(ToyTrainLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.seed)

    for data_seed, expected in ((None, 7), (3, 3)):
        cfg = toy_config(str(tmp_path / f"seed_{data_seed}"))
        cfg.dataloader.train._target_ = RecordingLoader
        cfg.dataloader.train.seed = data_seed
        cfg.train.max_iter = 2
        do_train(cfg)
        assert seen[-1] == expected
