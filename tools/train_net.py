#!/usr/bin/env python
"""Train or evaluate a LazyConfig recipe (detectron2 / detrex conventions).

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py \
        train.max_iter=100 train.output_dir=output/tiny
    python tools/train_net.py --config-file CFG --num-gpus 2            # 2 processes (gloo on CPU)
    python tools/train_net.py --config-file CFG --resume                # continue from last_checkpoint
    python tools/train_net.py --config-file CFG --eval-only train.init_checkpoint=output/tiny/model_final.pth

Trailing ``key=value`` arguments override config entries; an unknown key is an error naming the
closest valid keys (use ``+key=value`` to add a new key on purpose). All logic lives in
:mod:`mlla_rtdetr.engine`; this file only parses arguments and launches ``main(args)``.
Other tools load it by path (``runpy.run_path`` / importlib), never as ``import tools``.
"""
import sys

from mlla_rtdetr.engine import default_argument_parser, launch_from_args
from mlla_rtdetr.engine import main as engine_main
from mlla_rtdetr.errors import UserError


def main(args):
    """Run one process of training / evaluation; returns the evaluation results."""
    return engine_main(args)


def parse_args(argv=None):
    return default_argument_parser().parse_args(argv)


def cli(argv=None) -> int:
    args = parse_args(argv)
    print("Command Line Args:", args)
    try:
        launch_from_args(main, args)
    except UserError as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
