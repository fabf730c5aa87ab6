#!/usr/bin/env python
"""Train or evaluate a LazyConfig recipe (detectron2 / detrex conventions).

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py \
        train.max_iter=100 train.output_dir=output/tiny
    python tools/train_net.py --config-file CFG --num-gpus 2            # 2 processes (gloo on CPU)
    python tools/train_net.py --config-file CFG --resume                # continue from last_checkpoint
    python tools/train_net.py --config-file CFG --eval-only train.init_checkpoint=output/tiny/model_final.pth
    torchrun --nproc_per_node 8 tools/train_net.py --config-file CFG    # joins torchrun's group

``--config-file`` is a path or a recipe name (``rtdetr_tiny_synthetic.py``). Trailing ``key=value``
arguments override config entries; an unknown key is an error naming the closest valid keys (use
``+key=value`` to add a new key on purpose). Each process runs :func:`mlla_rtdetr.engine.main`;
:func:`mlla_rtdetr.launch.launch_from_args` starts the processes. Other tools (Slurm jobs) load
this file by path and use its ``default_argument_parser`` and ``main``; never ``import tools``.
"""
import sys

from mlla_rtdetr.engine import default_argument_parser, main
from mlla_rtdetr.errors import run_main
from mlla_rtdetr.launch import launch_from_args


def cli(argv=None) -> int:
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    launch_from_args(main, args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(cli))
