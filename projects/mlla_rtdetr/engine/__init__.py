"""Training engine: config loading and validated overrides, process setup, builders, the trainer
(CPU/CUDA, AMP, clipping), EMA, checkpoints, optimizer param groups, lr schedules, evaluation,
preemption, and the training / evaluation of tools/train_net.py."""
from ..checkpoint.io import read_checkpoint_file
from .checkpointer import BestCheckpointer, Checkpointer, PeriodicCheckpointer
from .init_checkpoint import InitCheckpointError, load_init_checkpoint, local_checkpoint_path
from .defaults import (
    TRAINING_SECTIONS,
    TrainingLength,
    build_ema,
    build_evaluator,
    build_lr_multiplier,
    build_model,
    build_optimizer,
    check_num_classes,
    default_argument_parser,
    load_config,
    load_weights,
    prepare_data,
    resolve_training_length,
    save_config,
    setup_process,
)
from .device import create_ddp_model, device_for_process, resolve_device
from .ema import EMAHook, ModelEMA, unwrap_model
from .evaluation import FastCOCOEvaluator, evaluate_model
from .optim import get_param_groups
from .overrides import OverrideError, UnknownConfigKeyError, apply_overrides
from .preemption import PREEMPTED_EXIT_CODE, PreemptionHook
from .schedule import IterationSchedule, lr_schedule
from .train_net import Evaluation, build_hooks, do_eval_only, do_test, do_train, main
from .trainer import NonFiniteLossError, Trainer, seed_iteration
from ..errors import ConfigError

__all__ = [k for k in globals() if not k.startswith("_")]
