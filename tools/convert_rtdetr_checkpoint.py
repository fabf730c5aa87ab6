#!/usr/bin/env python
"""Convert an official RT-DETR checkpoint (v1 ``rtdetr_pytorch`` or v2 ``rtdetrv2_pytorch``, any
backbone: ResNet-vd or HGNetv2) or official ImageNet backbone weights (ResNet-vd, PP-HGNetV2) to
this code base.

Examples::

    python tools/convert_rtdetr_checkpoint.py --input rtdetr_r18vd_dec3_6x_coco_from_paddle.pth \\
        --output output/rtdetr_r18vd_6x_coco_converted.pth
    python tools/convert_rtdetr_checkpoint.py --input rtdetrv2_r50vd_6x_coco_ema.pth --output r50.pth \\
        --config projects/mlla_rtdetr/configs/rtdetrv2_r50vd_6x_coco.py   # also check against the model
    python tools/convert_rtdetr_checkpoint.py --kind backbone --input ResNet50_vd_ssld_v2_pretrained_from_paddle.pth \\
        --output r50vd_backbone.pth --prefix backbone.
    python tools/convert_rtdetr_checkpoint.py --kind backbone --input PPHGNetV2_L_ssld_pretrained_from_paddle.pth \\
        --output hgnetv2_l_backbone.pth --prefix backbone. \\
        --config projects/mlla_rtdetr/configs/rtdetrv2_hgnetv2_l_6x_coco.py

The output is ``{"model": state_dict}`` with tensors only (``torch.load(..., weights_only=True)``
reads it); point ``train.init_checkpoint`` at it, or directly at the official file (it is
detected and converted on load).
"""
import argparse
import sys
from pathlib import Path

from mlla_rtdetr.errors import run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="official checkpoint (.pth)")
    p.add_argument("--output", required=True, help="where to write {'model': state_dict}")
    p.add_argument("--kind", choices=("rtdetr", "backbone", "resnet_vd", "hgnetv2"), default="rtdetr",
                   help="full RT-DETR detector (default), or ImageNet backbone weights: 'backbone' detects "
                        "ResNet-vd / HGNetv2 from the keys, 'resnet_vd' / 'hgnetv2' name the family")
    p.add_argument("--version", choices=("auto", "v1", "v2"), default="auto",
                   help="official code base the detector checkpoint comes from (default: detect from keys)")
    p.add_argument("--prefix", default="", help="backbone weights only: prefix added to every key (e.g. 'backbone.')")
    p.add_argument("--config", default=None,
                   help="optional LazyConfig recipe: build its model and require an exact key/shape match")
    p.add_argument("--unsafe-load", action="store_true",
                   help="allow arbitrary pickled objects in the input (only for files you trust)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mlla_rtdetr.checkpoint.io import read_checkpoint_file
    from mlla_rtdetr.checkpoint.rtdetr_converter import convert_official_backbone, convert_official_rtdetr
    from mlla_rtdetr.errors import UserError

    target = None
    if args.config:
        from mlla_rtdetr.engine import build_model, load_config

        model = build_model(load_config(args.config), checkpoint="")
        target = model if args.kind == "rtdetr" else model.backbone
    try:
        ckpt = read_checkpoint_file(args.input, weights_only=not args.unsafe_load)
        if args.kind == "rtdetr":
            state, report = convert_official_rtdetr(ckpt, version=args.version, target=target)
        else:
            kind = "auto" if args.kind == "backbone" else args.kind
            state, report = convert_official_backbone(ckpt, kind, prefix=args.prefix, target=target)
    except (UserError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {k: v.detach().cpu().contiguous() for k, v in state.items()}}, str(out))
    print(report)
    print(f"wrote {len(state)} tensors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
