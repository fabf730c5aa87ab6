"""Training engine: trainer (CPU/CUDA, AMP, clipping), EMA, checkpoints, optimizer param groups,
lr schedules, validated config overrides, evaluation and the train_net building blocks."""
from .checkpoint import (
    BestCheckpointer,
    Checkpointer,
    InitCheckpointError,
    PeriodicCheckpointer,
    load_init_checkpoint,
    read_checkpoint_file,
)
from .defaults import (
    ConfigError,
    TrainingLength,
    build_evaluator,
    build_lr_multiplier,
    build_model,
    build_optimizer,
    do_eval_only,
    do_test,
    do_train,
    launch_from_args,
    load_config,
    main,
    resolve_training_length,
    setup_process,
)
from .ema import EMAHook, ModelEMA, unwrap_model
from .evaluation import FastCOCOEvaluator, evaluate_model
from .launch import create_ddp_model, default_argument_parser, launch, resolve_device
from .optim import get_param_groups
from .overrides import OverrideError, UnknownConfigKeyError, apply_overrides
from .schedule import IterationSchedule, lr_schedule
from .trainer import NonFiniteLossError, Trainer, seed_iteration

__all__ = [k for k in globals() if not k.startswith("_")]
