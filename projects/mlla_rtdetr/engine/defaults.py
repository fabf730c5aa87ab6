"""The pieces every entry point shares: argument parser, config loading, process setup, training
length, and the builders of the model, optimizer, lr schedule, EMA and evaluator.

``tools/train_net.py`` runs them through :mod:`mlla_rtdetr.engine.train_net`; the other tools
(analysis, benchmark, demo, export, sweeps) load configs and build models with the same
:func:`load_config` and :func:`build_model`.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import os
import types
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import default_argument_parser as d2_argument_parser
from detectron2.engine import default_setup
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger
from detectron2.utils.registry import locate
from pycocotools.cocoeval import COCOeval as PycocotoolsCOCOeval

from ..config import config_path, get_config
from ..data import dataset_classes, dataset_nodes, prepare_datasets, register_node
from ..errors import ConfigError, DataError
from .init_checkpoint import load_init_checkpoint
from .ema import ModelEMA, unwrap_model
from .evaluation import FastCOCOEvaluator, faster_cocoeval, has_faster_coco_eval
from .optim import describe_param_groups
from .overrides import apply_overrides

__all__ = [
    "TRAINING_SECTIONS",
    "TrainingLength",
    "default_argument_parser",
    "load_config",
    "setup_process",
    "save_config",
    "resolve_training_length",
    "check_num_classes",
    "prepare_data",
    "build_model",
    "load_weights",
    "build_optimizer",
    "build_lr_multiplier",
    "build_ema",
    "build_evaluator",
]

logger = logging.getLogger("mlla_rtdetr.engine")

TRAINING_SECTIONS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")
"""The top-level entries of a recipe that can be trained."""


# ----------------------------------------------------------------------------- arguments, config
def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's parser (--config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url, then ``key=value`` overrides as ``opts``) and --dist-backend."""
    epilog = epilog or (
        "Examples:\n"
        "  train_net.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py "
        "train.max_iter=100 train.output_dir=out\n"
        "  train_net.py --config-file rtdetr_tiny_synthetic.py --num-gpus 2 train.device=cpu   # 2 gloo processes\n"
        "  train_net.py --config-file cfg.py --eval-only train.init_checkpoint=out/model_final.pth\n"
    )
    parser = d2_argument_parser(epilog=epilog)
    parser.add_argument(
        "--dist-backend", default="auto", choices=["auto", "nccl", "gloo"],
        help="torch.distributed backend; auto = nccl when training on CUDA, else gloo",
    )
    return parser


def load_config(config_file: str, overrides: Sequence[str] = (), require: Sequence[str] = ()) -> DictConfig:
    """Load a LazyConfig file and apply validated ``key=value`` overrides.

    Args:
        config_file: a path, or a name relative to ``configs/`` or ``projects/mlla_rtdetr/configs/``
            (:func:`mlla_rtdetr.config.config_path`); a missing file is a :class:`ConfigError`
            naming the closest known configs.
        overrides: detectron2/Hydra ``key=value`` strings; an unknown key is a :class:`ConfigError`
            naming the closest valid keys (``+key=value`` adds a key on purpose). A ``--`` (the
            end of a tool's options) is skipped.
        require: top-level entries the config must define (e.g. :data:`TRAINING_SECTIONS`).
    """
    cfg = get_config(config_file)
    cfg = apply_overrides(cfg, [o for o in overrides if o != "--"])
    missing = [s for s in require if s not in cfg]
    if missing:
        raise ConfigError(
            f"Config '{config_file}' lacks {missing}; a recipe defines model, dataloader "
            "(train, test, evaluator), optimizer, lr_multiplier and train "
            "(see configs/common/train.py)."
        )
    return cfg


def setup_process(cfg: DictConfig, args: Optional[argparse.Namespace] = None) -> str:
    """detectron2's ``default_setup`` (output dir, loggers, environment, arguments and recipe in
    the log, config.yaml, RNGs seeded with ``train.seed + rank``, cudnn benchmark), plus the
    ``mlla_rtdetr`` logger. A negative ``train.seed`` becomes one random seed shared by all ranks
    and written into the config (detectron2 would draw one per rank and record none).
    Returns ``train.output_dir``."""
    if int(cfg.train.seed) < 0:
        cfg.train.seed = comm.shared_random_seed() % (2**31)
        drawn = True
    else:
        drawn = False
    if args is not None and getattr(args, "config_file", ""):
        args = argparse.Namespace(**{**vars(args), "config_file": str(config_path(args.config_file))})
    default_setup(cfg, args)
    output_dir = cfg.train.output_dir
    setup_logger(output_dir, distributed_rank=comm.get_rank(), name="mlla_rtdetr", abbrev_name="mlla_rtdetr")
    if drawn:
        logger.info(f"train.seed < 0: drew seed {cfg.train.seed} (shared by all ranks)")
    return output_dir


def save_config(cfg: DictConfig, output_dir: str) -> None:
    """Write the resolved config to ``output_dir/config.yaml`` (main process)."""
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        LazyConfig.save(cfg, path)
        logger.info(f"Resolved config saved to {path}")


# ----------------------------------------------------------------------------- length / periods
@dataclass
class TrainingLength:
    max_iter: int
    iters_per_epoch: Optional[int]
    eval_period: int
    checkpoint_period: int

    def describe(self) -> str:
        ipe = self.iters_per_epoch
        ep = f" = {self.max_iter / ipe:.2f} epochs of {ipe} iterations" if ipe else ""
        return (
            f"training length: {self.max_iter} iterations{ep}; eval every {self.eval_period or 'never'} "
            f"iterations (and at the end); checkpoint every {self.checkpoint_period or 'never'} iterations"
        )


def _iters(value_iter, value_epochs, ipe: Optional[int], what: str) -> int:
    if value_iter is not None:
        return int(value_iter)
    if value_epochs is None:
        return 0
    if not ipe:
        raise ConfigError(
            f"{what} is given in epochs but the train loader does not expose iters_per_epoch; "
            f"give {what} in iterations instead."
        )
    return int(round(float(value_epochs) * ipe))


def resolve_training_length(cfg: DictConfig, iters_per_epoch: Optional[int]) -> TrainingLength:
    """Turn epochs into iterations (iteration fields win when set) and write them back into
    ``cfg.train`` (max_iter, eval_period, checkpointer.period) so config.yaml is resolved."""
    t = cfg.train
    max_iter = _iters(t.get("max_iter"), t.get("epochs"), iters_per_epoch, "train.epochs")
    if max_iter <= 0:
        raise ConfigError("Set train.max_iter (iterations) or train.epochs to a positive value.")
    eval_period = _iters(t.get("eval_period"), t.get("eval_epochs"), iters_per_epoch, "train.eval_epochs")
    ck = t.checkpointer
    ckpt_period = _iters(ck.get("period"), ck.get("period_epochs"), iters_per_epoch, "train.checkpointer.period_epochs")
    t.max_iter, t.eval_period, ck.period = max_iter, eval_period, ckpt_period
    return TrainingLength(max_iter, iters_per_epoch, eval_period, ckpt_period)


# ----------------------------------------------------------------------------- checks
_CLASS_KEYS = ("model.num_classes", "model.criterion.num_classes", "model.decoder.num_classes")


def _literal_int(cfg: DictConfig, key: str) -> Optional[int]:
    """The int at ``key`` when it is written there (not an interpolation of another key)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None)
    if not OmegaConf.is_config(parent) or leaf not in parent or OmegaConf.is_interpolation(parent, leaf):
        return None
    value = parent[leaf]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _model_class_counts(cfg: DictConfig, model: Optional[torch.nn.Module]) -> "OrderedDict[str, int]":
    counts: "OrderedDict[str, int]" = OrderedDict()
    if model is not None:
        m = unwrap_model(model)
        for key in _CLASS_KEYS:
            obj = m
            for part in key.split(".")[1:-1]:
                obj = getattr(obj, part, None)
            value = getattr(obj, "num_classes", None)
            if isinstance(value, int):
                counts[key] = value
    else:
        for key in _CLASS_KEYS:
            value = OmegaConf.select(cfg, key, default=None)
            if isinstance(value, int) and not isinstance(value, bool):
                counts[key] = value
    return counts


def check_num_classes(cfg: DictConfig, model: Optional[torch.nn.Module] = None,
                      classes: Optional[Dict[str, Sequence[str]]] = None) -> int:
    """The model (its config, or the built ``model``), its criterion and decoder, and every dataset
    of ``cfg.dataloader`` must agree on the classes. Checked on the config before anything is
    built (:func:`prepare_data`) and on the built model.

    Args:
        classes: config key of each dataset (``"dataloader.train.dataset"``) -> its class names, as
            :func:`prepare_data` found them; by default read from the datasets the config names
            (registered from their source fields when needed).

    Raises :class:`DataError` when the datasets disagree with each other and :class:`ConfigError`
    naming the exact overrides to add when the model disagrees with them. Returns the count
    (0 when the config names no dataset).
    """
    if classes is None:
        classes = {key: dataset_classes(register_node(node, key)[0]) for key, node in dataset_nodes(cfg).items()}
    if not classes:
        return 0
    (first_key, first), *rest = classes.items()
    for key, names in rest:
        if list(names) != list(first):
            raise DataError(
                f"The datasets disagree on the classes: {first_key} has {list(first)}, {key} has "
                f"{list(names)}. Train and test data must have the same classes in the same order "
                "(set class_names on both to pin them)."
            )
    k = len(first)
    counts = _model_class_counts(cfg, model)
    if all(v == k for v in counts.values()):
        return k
    fixes = ["model.num_classes"] + [key for key in _CLASS_KEYS[1:] if _literal_int(cfg, key) is not None]
    shown = ", ".join(f"{key}={v}" for key, v in counts.items())
    names = ", ".join(first) if k <= 10 else ", ".join(list(first)[:10]) + f", ... ({k - 10} more)"
    raise ConfigError(
        f"The model is set up for a different number of classes than the data: {shown}, but "
        f"{' and '.join(classes)} {'have' if len(classes) > 1 else 'has'} {k} class{'es' if k != 1 else ''} "
        f"({names}). Add {'these overrides' if len(fixes) > 1 else 'this override'}:\n  "
        + " ".join(f"{key}={k}" for key in fixes)
    )


def prepare_data(cfg: DictConfig, splits: Sequence[str] = ("train", "test"), check_files: bool = True,
                 keep_loaded: bool = True) -> Dict[str, List[str]]:
    """Before anything is built: register, load and check the datasets of ``cfg.dataloader``
    (:func:`mlla_rtdetr.data.prepare_datasets`; ``splits``: the loaders to prepare), then check
    the model config's class count against them. Returns config key -> class names, for
    :func:`check_num_classes` on the built model."""
    prepared = prepare_datasets(cfg, splits=splits, check_files=check_files, keep_loaded=keep_loaded)
    classes = {p.key: p.classes for p in prepared}
    check_num_classes(cfg, classes=classes)
    return classes


# ----------------------------------------------------------------------------- builders
def build_model(cfg: DictConfig, device="cpu", checkpoint: Optional[str] = None,
                use_ema: bool = True, deploy: bool = False) -> torch.nn.Module:
    """Instantiate ``cfg.model`` on ``device``.

    Every RNG is seeded with ``train.seed`` right before construction (detectron2's
    ``seed_all_rng``; 0 for a config without ``train``, a random seed for a negative one), so
    every rank and every tool builds the same initial weights whatever ran before.

    Args:
        checkpoint: weights to load (:func:`load_weights`); None: ``train.init_checkpoint``;
            "": none (training loads ``train.init_checkpoint`` itself, into the EMA as well).
        use_ema: load the EMA weights of a training checkpoint when it holds them.
        deploy: return the model's inference form (``model.deploy()``: eval mode, folded RepVGG /
            BatchNorms, channels-last), the fast path of every inference tool.
    """
    if "model" not in cfg:
        raise ConfigError("The config defines no `model`; pass a recipe or a model config.")
    seed = int(OmegaConf.select(cfg, "train.seed", default=0))
    seed_all_rng(seed if seed >= 0 else None)
    model = instantiate(cfg.model)
    if checkpoint is None:
        checkpoint = OmegaConf.select(cfg, "train.init_checkpoint", default="") or ""
    if checkpoint:
        load_weights(model, checkpoint, use_ema=use_ema)
    model.to(torch.device(device))
    n = sum(p.numel() for p in model.parameters())
    logger.info(f"Model {type(model).__name__}: {n / 1e6:.2f} M parameters")
    if deploy:
        model.eval()
        if hasattr(model, "deploy"):
            model.deploy()
    return model


def load_weights(model: torch.nn.Module, checkpoint: str, use_ema: bool = True) -> None:
    """Load a checkpoint into ``model`` with :func:`load_init_checkpoint` (checkpoints of this code
    base, official RT-DETR / MLLA ones, plain state dicts). With ``use_ema`` the EMA weights of a
    training checkpoint are used when it holds them (they are the ones evaluated)."""
    # load_init_checkpoint loads the model weights into `model`, then the EMA weights into
    # `ema.module`, which is the same model here: the EMA weights win when present.
    ema = types.SimpleNamespace(module=model, updates=0) if use_ema else None
    report = load_init_checkpoint(model, checkpoint, ema=ema)
    logger.info("Loaded %s (%s, EMA: %s)", checkpoint, report.get("format"), report.get("ema", "not used"))


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if "params" in cfg.optimizer and OmegaConf.is_config(cfg.optimizer.params) and "model" in cfg.optimizer.params:
        cfg.optimizer.params.model = unwrap_model(model)
    optimizer = instantiate(cfg.optimizer)
    if "params" in cfg.optimizer and OmegaConf.is_config(cfg.optimizer.params):
        cfg.optimizer.params.model = None  # keep the config serializable
    logger.info(f"Optimizer {type(optimizer).__name__}\n" + describe_param_groups(optimizer))
    return optimizer


def build_lr_multiplier(cfg: DictConfig, length: TrainingLength):
    """Instantiate ``cfg.lr_multiplier`` with ``max_iter`` / ``iters_per_epoch`` filled in when
    its target accepts them (fvcore ParamSchedulers that do not are used as they are)."""
    lm = cfg.lr_multiplier
    target = lm.get("_target_") if OmegaConf.is_config(lm) else None
    if target is not None:
        fn = locate(target) if isinstance(target, str) else target
        params = inspect.signature(fn).parameters
        if "max_iter" in params:
            lm.max_iter = length.max_iter
        if "iters_per_epoch" in params:
            lm.iters_per_epoch = length.iters_per_epoch
    sched = instantiate(lm)
    if hasattr(sched, "describe"):
        logger.info(f"lr schedule: {sched.describe()}")
    return sched


def build_ema(cfg: DictConfig, model: torch.nn.Module) -> Optional[ModelEMA]:
    """The EMA of ``model`` per ``train.model_ema`` (None when disabled)."""
    ema_cfg = cfg.train.model_ema
    if not ema_cfg.enabled:
        return None
    return ModelEMA(model, decay=ema_cfg.decay, warmups=ema_cfg.warmups)


def _as_fast_coco(evaluator):
    """Make a plain detectron2 COCOEvaluator a FastCOCOEvaluator (same state): faster-coco-eval
    when installed, and the count of evaluated images in the results."""
    if type(evaluator) is COCOEvaluator:
        evaluator.__class__ = FastCOCOEvaluator
        if has_faster_coco_eval():
            evaluator.backend, evaluator._cocoeval_fn = "faster_coco_eval", faster_cocoeval
        else:
            evaluator.backend, evaluator._cocoeval_fn = "pycocotools", PycocotoolsCOCOeval
    return evaluator


def build_evaluator(cfg: DictConfig):
    return _as_fast_coco(instantiate(cfg.dataloader.evaluator))
