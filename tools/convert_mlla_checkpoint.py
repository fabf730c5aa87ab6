#!/usr/bin/env python
"""Convert an official MLLA checkpoint (ImageNet classification or mmdetection detection) into a
checkpoint for this code base.

By default the result addresses the backbone of an MLLA-RT-DETR detector (keys ``backbone.*``,
under ``model``), ready for ``train.init_checkpoint``::

    python tools/convert_mlla_checkpoint.py --input MLLA_T.pth --output weights/mlla_t_in1k_backbone.pth

For a hybrid ResNet-vd / MLLA backbone (``stage_blocks`` with "mlla" stages, e.g.
``mlla_hybrid_r18vd_120e_coco.py``) ``--target hybrid --config RECIPE`` maps the MLLA stages of the
same width onto the recipe's MLLA stages and, with ``--resnet-vd``, adds the ImageNet ResNet-vd
weights of the stem, the convolutional stages and the MLLA stages' downsampling (one file for
``train.init_checkpoint``; ``checkpoint/hybrid_init.py`` says what comes from where)::

    python tools/convert_mlla_checkpoint.py --target hybrid --input MLLA_T.pth \
        --resnet-vd ResNet18_vd_pretrained_from_paddle.pth \
        --config projects/mlla_rtdetr/configs/mlla_hybrid_r18vd_120e_coco.py --output weights/hybrid_r18_in1k.pth

The variant is inferred from the weights (stem width and depths) unless ``--variant`` is given.
The report says which keys were used and which were ignored (derived RoPE tables, the
classification head, detector heads); any other mismatch stops with a table and nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mlla_rtdetr.checkpoint.mlla_converter import (
    CheckpointConversionError,
    convert_official_mlla,
    extract_mlla_state_dict,
    infer_mlla_variant,
)
from mlla_rtdetr.checkpoint.io import read_checkpoint_file
from mlla_rtdetr.errors import run_main
from mlla_rtdetr.modeling.backbone.mlla import MLLA_VARIANTS, build_mlla_backbone, build_mlla_classifier

STAGES = ("res2", "res3", "res4", "res5")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="official checkpoint (.pth)")
    p.add_argument("--output", required=True, help="where to write the converted checkpoint")
    p.add_argument("--variant", choices=sorted(MLLA_VARIANTS), default=None,
                   help="model variant (default: inferred from the weights)")
    p.add_argument("--target", choices=("backbone", "classifier", "hybrid"), default="backbone",
                   help="backbone: MLLABackbone (detection); classifier: MLLAClassifier (ImageNet); "
                        "hybrid: the MLLA stages of a hybrid backbone (needs --config)")
    p.add_argument("--config", default=None, help="--target hybrid: the recipe whose backbone is initialised")
    p.add_argument("--resnet-vd", default=None,
                   help="--target hybrid: also take the stem / conv stages / downsampling from this "
                        "official ImageNet ResNet-vd checkpoint")
    p.add_argument("--out-features", nargs="+", choices=STAGES, default=["res3", "res4", "res5"],
                   help="backbone outputs of the model the weights are for (default: res3 res4 res5)")
    p.add_argument("--prefix", default=None,
                   help="prefix for every key (default: 'backbone.' for --target backbone, '' otherwise)")
    p.add_argument("--ema", action="store_true", help="use 'state_dict_ema' of a classification checkpoint")
    p.add_argument("--unsafe-load", action="store_true",
                   help="torch.load with weights_only=False (only for files you trust)")
    return p.parse_args(argv)


def convert_hybrid(args) -> int:
    from detectron2.config import instantiate

    from mlla_rtdetr.checkpoint.hybrid_init import hybrid_imagenet_init
    from mlla_rtdetr.engine import load_config

    if not args.config:
        print("error: --target hybrid needs --config (the hybrid recipe)", file=sys.stderr)
        return 2
    try:
        backbone = instantiate(load_config(args.config).model.backbone)
        resnet = read_checkpoint_file(args.resnet_vd, weights_only=not args.unsafe_load) if args.resnet_vd else None
        mlla = read_checkpoint_file(args.input, weights_only=not args.unsafe_load)
        state, report = hybrid_imagenet_init(backbone, resnet_vd=resnet, mlla=mlla,
                                             prefix="backbone." if args.prefix is None else args.prefix)
    except (CheckpointConversionError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "__author__": f"convert_mlla_checkpoint (hybrid, {args.config})"}, str(out))
    print(report)
    print(f"wrote {len(state)} tensors to {out}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.target == "hybrid":
        return convert_hybrid(args)
    try:
        ckpt = read_checkpoint_file(args.input, weights_only=not args.unsafe_load)
        state, _ = extract_mlla_state_dict(ckpt, use_ema=args.ema)
        plain = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
        variant = args.variant or infer_mlla_variant(plain)
        if variant is None:
            raise CheckpointConversionError(
                "Cannot infer the MLLA variant from the weights (stem width / depths match none of "
                f"{sorted(MLLA_VARIANTS)}); pass --variant.")
        if args.target == "backbone":
            model = build_mlla_backbone(variant, out_features=args.out_features)
        else:
            model = build_mlla_classifier(variant)
        prefix = args.prefix if args.prefix is not None else ("backbone." if args.target == "backbone" else "")
        converted, report = convert_official_mlla(ckpt, model=model, prefix=prefix, use_ema=args.ema)
        model.load_state_dict({k[len(prefix):]: v for k, v in converted.items()}, strict=True)
    except (CheckpointConversionError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": converted, "matching_heuristics": False,
                "__author__": f"convert_mlla_checkpoint ({variant}, {args.target})"}, str(out))
    print(f"variant: {variant}")
    print(report)
    print(f"wrote {len(converted)} tensors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
