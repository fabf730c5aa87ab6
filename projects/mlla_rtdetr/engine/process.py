"""Setting up a training / evaluation process: output folder, loggers, environment, seeds."""
from __future__ import annotations

import argparse
import logging
from typing import Optional

from omegaconf import DictConfig

from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import config_path

__all__ = ["setup_process"]

logger = logging.getLogger("mlla_rtdetr.engine")


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
