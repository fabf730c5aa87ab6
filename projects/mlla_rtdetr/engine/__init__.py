"""Training engine, a module per job: arguments (:mod:`.arguments`), recipe loading with validated
overrides (:mod:`.recipe`, :mod:`.overrides`), process setup (:mod:`.process`), training length
(:mod:`.training_length`), the class check (:mod:`.classes`), builders (:mod:`.builders`), the
trainer (CPU/CUDA, AMP, clipping), EMA, the training checkpointer, loading initial weights,
optimizer param groups, lr schedules, evaluation of raw / EMA weights, preemption, and the
training / evaluation of tools/train_net.py (:mod:`.train_net`)."""
from ..checkpoint.io import read_checkpoint_file
from .arguments import default_argument_parser
from .builders import build_ema, build_evaluator, build_lr_multiplier, build_model, build_optimizer, load_weights
from .checkpointer import BestCheckpointer, Checkpointer, PeriodicCheckpointer
from .classes import check_num_classes, prepare_data
from .init_checkpoint import InitCheckpointError, load_init_checkpoint, local_checkpoint_path
from .device import create_ddp_model, device_for_process, resolve_device
from .ema import EMAHook, ModelEMA, unwrap_model
from .ema_restart import EMARestartHook
from .evaluation import evaluate_model
from .optim import get_param_groups
from .overrides import OverrideError, UnknownConfigKeyError, apply_overrides
from .preemption import PREEMPTED_EXIT_CODE, PreemptionHook
from .process import setup_process
from .recipe import TRAINING_SECTIONS, load_config, save_config
from .schedule import IterationSchedule, lr_schedule
from .train_net import Evaluation, build_hooks, do_eval_only, do_test, do_train, main
from .trainer import NonFiniteLossError, Trainer, seed_iteration
from .training_length import TrainingLength, resolve_training_length
from ..data import FastCOCOEvaluator
from ..errors import ConfigError

__all__ = [k for k in globals() if not k.startswith("_")]
