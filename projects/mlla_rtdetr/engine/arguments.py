"""The command-line arguments of tools/train_net.py (and the tools that launch it)."""
from __future__ import annotations

import argparse
from typing import Optional

from detectron2.engine import default_argument_parser as d2_argument_parser

__all__ = ["default_argument_parser"]


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
