"""DEIM's training schedule pieces: the flat-cosine lr schedule (``configs/common/schedule.py``
``deim_flat_cosine``) against the official formula, and the EMA restart hook step by step."""
import math
import os

import pytest
import torch
from detectron2.config import instantiate
from detectron2.engine import hooks as d2_hooks
from detectron2.solver import LRMultiplier
from torch import nn

from engine_utils import toy_config
from mlla_rtdetr.config import get_config
from mlla_rtdetr.engine import (
    EMAHook,
    build_ema,
    build_lr_multiplier,
    build_model,
    build_optimizer,
    do_train,
    read_checkpoint_file,
    resolve_training_length,
)
from mlla_rtdetr.engine.train_net import build_trainer


def official_flat_cosine(it, total_iter, warmup_iter, flat_iter, no_aug_iter, init_lr, min_lr):
    """DEIM's lr at iteration ``it`` as the paper / official config define it: quadratic warm-up
    over ``warmup_iter``, flat until ``flat_iter``, half a cosine down to ``min_lr`` = lr_gamma *
    lr at the start of the no-aug tail, ``min_lr`` during the tail."""
    if it <= warmup_iter:
        return init_lr * (it / warmup_iter) ** 2
    if it <= flat_iter:
        return init_lr
    if it >= total_iter - no_aug_iter:
        return min_lr
    progress = (it - flat_iter) / (total_iter - flat_iter - no_aug_iter)
    return min_lr + (init_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup", [9, 30])
def test_deim_flat_cosine_matches_official_every_iteration(warmup):
    """12 epochs of 7 iterations (flat 5, no-aug tail 2, lr_gamma 0.5), two param groups, through
    detectron2's LRMultiplier as the LRScheduler hook runs it."""
    ipe, epochs, flat, no_aug, gamma = 7, 12, 5, 2, 0.5
    cfg = get_config("common/schedule.py").deim_flat_cosine
    assert (cfg.warmup_method, cfg.warmup, cfg.flat, cfg.decay_end, cfg.min_factor) == ("quadratic", 2000, 64, 117, 0.5)
    cfg.warmup, cfg.flat, cfg.decay_end, cfg.min_factor = warmup, flat, epochs - no_aug, gamma
    cfg.max_iter, cfg.iters_per_epoch = ipe * epochs, ipe
    sched = instantiate(cfg)
    base = [2e-4, 1e-5]
    opt = torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in base])
    mult = LRMultiplier(opt, sched, max_iter=ipe * epochs)
    for it in range(ipe * epochs):
        for group, lr in zip(opt.param_groups, base):
            expected = official_flat_cosine(it, ipe * epochs, warmup, ipe * flat, ipe * no_aug, lr, lr * gamma)
            assert group["lr"] == pytest.approx(expected, rel=1e-12, abs=1e-20), (it, group["lr"], expected)
        mult.step()
    assert opt.param_groups[0]["lr"] != base[0]  # the schedule moved: not a constant
    assert sched.value_at_iter(0) == 0.0 and sched.value_at_iter(3) == pytest.approx((3 / warmup) ** 2)
    assert sched.value_at_iter(ipe * flat) == 1.0 and sched.value_at_iter(ipe * flat + 1) < 1.0
    assert sched.value_at_iter(ipe * (epochs - no_aug)) == gamma == sched.value_at_iter(ipe * epochs - 1)


# ----------------------------------------------------------------------------- EMA restart
def _restart_config(out, restart_epoch):
    cfg = toy_config(out)  # 48 images, batch 4: 12 iterations per epoch
    cfg.train.max_iter = 15
    cfg.train.eval_period = 4  # evaluations after iterations 3, 7, 11 (stage 1) and 15
    cfg.train.checkpointer.period = 0
    cfg.train.model_ema.decay = 0.99
    cfg.train.model_ema.restart_epoch = restart_epoch
    cfg.train.model_ema.restart_decay = 0.95
    cfg.train.model_ema.eval_raw = False
    return cfg


def _continue_by_hand(tmp_path, state, ema_decay):
    """Iterations 12..14 of the toy run by a fresh trainer whose model, EMA and optimizer are
    ``state``'s: the run's schedule, data and per-iteration seeds. Returns (model, ema)."""
    cfg = _restart_config(str(tmp_path / "reference"), restart_epoch=None)
    model = build_model(cfg, "cpu", checkpoint="")
    loader = instantiate(cfg.dataloader.train)
    length = resolve_training_length(cfg, loader.iters_per_epoch)
    optimizer = build_optimizer(cfg, model)
    ema = build_ema(cfg, model)
    trainer = build_trainer(cfg, model, loader, optimizer, torch.device("cpu"))
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["trainer"]["optimizer"])
    ema.decay = ema_decay
    trainer.register_hooks([EMAHook(ema, model), d2_hooks.LRScheduler(scheduler=build_lr_multiplier(cfg, length))])
    loader.set_start_iter(12)
    trainer.train(12, 15)
    return model, ema


def test_ema_restart_restores_best_stage1_state_step_by_step(tmp_path):
    # stage 1 alone (the run is deterministic): its model_best is what the restart must load
    stage1 = str(tmp_path / "stage1")
    cfg = _restart_config(stage1, restart_epoch=1)
    cfg.train.max_iter = 12
    do_train(cfg)
    best = read_checkpoint_file(os.path.join(stage1, "model_best.pth"))
    assert best["trainer"]["iteration"] in (3, 7, 11)
    best_steps = {k: int(v["step"]) for k, v in best["trainer"]["optimizer"]["state"].items()}
    out = str(tmp_path / "restart")
    do_train(_restart_config(out, restart_epoch=1))
    final = read_checkpoint_file(os.path.join(out, "model_final.pth"))
    assert final["trainer"]["iteration"] == 14

    # the same iterations by hand from the best stage-1 state with the restart decay 0.95
    model, ema = _continue_by_hand(tmp_path, best, 0.95)
    for k, v in final["model"].items():
        assert torch.equal(v, model.state_dict()[k]), k
    for k, v in final["ema"]["module"].items():
        assert torch.equal(v, ema.module.state_dict()[k]), k
    assert final["ema"]["updates"] == best["ema"]["updates"] + 3  # the restored count, then 3 updates
    state = final["trainer"]["optimizer"]["state"]
    assert state.keys() == best_steps.keys()
    for k, v in state.items():
        assert int(v["step"]) == best_steps[k] + 3

    # continuing from the last stage-1 state with the old decay ends elsewhere (the check can fail)
    last = read_checkpoint_file(os.path.join(stage1, "model_final.pth"))
    model, ema = _continue_by_hand(tmp_path, last, 0.99)
    assert any(not torch.equal(v, ema.module.state_dict()[k]) for k, v in final["ema"]["module"].items()
               if v.dtype.is_floating_point)


def test_ema_restart_needs_a_best_checkpoint_metric(tmp_path):
    from mlla_rtdetr.errors import ConfigError

    cfg = _restart_config(str(tmp_path / "x"), restart_epoch=1)
    cfg.train.checkpointer.best_metric = None
    with pytest.raises(ConfigError, match="best_metric"):
        do_train(cfg)


def test_deim_recipe_base_has_the_official_r18_values_and_one_place_for_stages():
    deim = get_config("common/deim.py")
    train, loader, lm = deim.train, deim.dataloader.train, deim.lr_multiplier
    assert (deim.optimizer.lr, deim.optimizer.weight_decay, loader.total_batch_size, train.epochs) == (2e-4, 1e-4, 16, 120)
    assert (lm.flat, lm.decay_end, lm.min_factor, lm.warmup) == (64, 117, 0.5, 2000)
    assert (train.model_ema.restart_epoch, train.model_ema.restart_decay, train.model_ema.warmups) == (117, 0.9999, 2000)
    assert list(loader.batch_augment.mixup_epochs) == [4, 64] and loader.batch_augment.multiscale_stop_epoch == 117
    loader.mapper.policy_epochs = [4, 64, 120]  # DEIM-D-FINE-S: everything follows
    train.epochs = 132
    assert (lm.flat, lm.decay_end, train.model_ema.restart_epoch, loader.batch_augment.multiscale_stop_epoch) == (64, 120, 120, 120)
