#!/usr/bin/env python
"""Parameters and FLOPs of a model config.

Parameters: total, trainable and per top-level module (backbone, encoder, decoder, ...).
FLOPs: fvcore's jit-tracing counter on ``model.forward_raw`` (eval mode, no post-processing) for a
random image batch of the given size. fvcore counts one multiply-add as one flop, i.e. it returns
MACs; this tool reports **GFLOPs = 2 x GMACs** (the convention of the RT-DETR and MLLA papers) and
GMACs next to it. Element-wise ops (activations, softmax, additions) are not counted; the ops fvcore
skipped are listed. Without ``--deploy`` and at batch 1 it also prints the official count
(convolutions and matrix products, encoder box head on every token: the convention of the official
RT-DETR numbers, :func:`mlla_rtdetr.utils.flops.official_gflops`).

Examples::

  python tools/analyze_model.py --config-file projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py
  python tools/analyze_model.py --config-file CFG --input-size 640 --deploy --output out/flops.json \\
      model.decoder.num_layers=3
"""
from __future__ import annotations

import argparse
import sys

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.errors import run_main
from mlla_rtdetr.utils.console import tool_log
from mlla_rtdetr.utils.flops import count_parameters, model_flops, official_gflops
from mlla_rtdetr.utils.report import environment, markdown_table, write_json


log = tool_log("analyze_model")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="recipe or model config (LazyConfig .py)")
    p.add_argument("--tasks", nargs="+", choices=["params", "flops"], default=["params", "flops"])
    p.add_argument("--input-size", type=int, nargs="+", default=None,
                   help="H [W] of the FLOPs input (default: the model's eval_size, else 640)")
    p.add_argument("--batch-size", type=int, default=1, help="FLOPs are reported per image")
    p.add_argument("--deploy", action="store_true", help="count FLOPs after RepVGG deploy()")
    p.add_argument("--checkpoint", default="", help="weights to load (irrelevant for counts)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default=None, help="write the numbers as JSON here")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    return p


def input_hw(args, model):
    if args.input_size:
        return args.input_size[0], args.input_size[-1]
    eval_size = getattr(model, "eval_size", None) or getattr(model, "eval_spatial_size", None)
    if eval_size:
        return int(eval_size[0]), int(eval_size[1])
    return 640, 640


def analyze(args) -> dict:
    log(f"building {args.config_file}")
    cfg = load_config(args.config_file, args.opts)
    model = build_model(cfg, checkpoint=args.checkpoint, device=args.device)
    out = {"config_file": args.config_file, "overrides": list(args.opts), "environment": environment()}
    if "params" in args.tasks:
        out["params"] = count_parameters(model)
    if "flops" in args.tasks:
        if args.deploy:
            model.deploy()
        h, w = input_hw(args, model)
        log(f"counting FLOPs at {h}x{w}, batch {args.batch_size} (jit trace; may take a while)")
        rep = model_flops(model, h, w, batch_size=args.batch_size)
        per_image = rep.as_dict()
        b = args.batch_size
        out["flops"] = {
            "input_size": [h, w], "batch_size": b, "deploy": bool(args.deploy),
            "convention": "GFLOPs = 2 x GMACs; fvcore counts one multiply-add as one flop (MAC)",
            "gflops": per_image["gflops"] / b, "gmacs": per_image["gmacs"] / b,
            "by_module_gflops": {k: v / b for k, v in per_image["by_module_gflops"].items()},
            "by_operator_gflops": {k: v / b for k, v in per_image["by_operator_gflops"].items()},
            "unsupported_ops": per_image["unsupported_ops"],
        }
        if not args.deploy and b == 1:
            out["flops"]["official_gflops"] = official_gflops(model, h, w, report=rep)
    return out


def render(out: dict) -> str:
    parts = []
    if "params" in out:
        p = out["params"]
        rows = [{"module": k, "params": v["total"], "trainable": v["trainable"], "M": v["total"] / 1e6}
                for k, v in p["per_module"].items()]
        rows.append({"module": "total", "params": p["total"], "trainable": p["trainable"], "M": p["total"] / 1e6})
        parts.append("### Parameters\n\n" + markdown_table(rows))
    if "flops" in out:
        f = out["flops"]
        rows = [{"module": k, "GFLOPs": v} for k, v in f["by_module_gflops"].items() if v > 0]
        rows.append({"module": "total", "GFLOPs": f["gflops"]})
        h, w = f["input_size"]
        note = (f"per image at {h}x{w}{' after deploy()' if f['deploy'] else ''}: {f['gflops']:.2f} GFLOPs "
                f"= 2 x {f['gmacs']:.2f} GMACs (fvcore counts MACs).")
        if "official_gflops" in f:
            note += (f" Official count (convs and matrix products, encoder box head on every token): "
                     f"{f['official_gflops']:.1f} GFLOPs.")
        if f["unsupported_ops"]:
            note += " Not counted: " + ", ".join(f"{k} x{v}" for k, v in sorted(f["unsupported_ops"].items()))
        parts.append("### FLOPs\n\n" + markdown_table(rows) + "\n\n" + note)
    return "\n\n".join(parts)


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.input_size and len(args.input_size) > 2:
        parser.error("--input-size takes H or H W")
    out = analyze(args)
    print(render(out))
    if args.output:
        write_json(args.output, out)
        log(f"wrote {args.output}")
    return out


if __name__ == "__main__":
    sys.exit(run_main(main))
