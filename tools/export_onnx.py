#!/usr/bin/env python
"""Export a model to ONNX (after RepVGG ``deploy()``) and check it against PyTorch with onnxruntime.

Two heads (``--head``):

* ``raw`` (default): input ``images`` (N, 3, H, W) float RGB in [0, 1]; outputs ``pred_logits``
  (N, Q, K) class logits and ``pred_boxes`` (N, Q, 4) normalized (cx, cy, w, h) -- exactly
  ``model.forward_raw``. Apply sigmoid + top-K yourself.
* ``topk``: inputs ``images`` and ``orig_target_sizes`` (N, 2) int64 as (width, height); outputs
  ``labels`` (N, K) int64, ``boxes`` (N, K, 4) absolute (x1, y1, x2, y2) in the original image,
  ``scores`` (N, K) sigmoid scores -- the RT-DETR post-processing with K = ``--num-top``.

The batch axis is dynamic; H, W are fixed to ``--input-size`` (resize images to it, as the test
pipeline does; export once per input size). The export uses torch's TorchScript-based exporter
(``dynamo=False``) at ``--opset`` (default 17), traced at batch 2. After export the ONNX checker
runs, the ONNX operators used are printed and checked against the set the TensorRT 10 ONNX parser
supports (no custom ops; ``--op-set any`` skips this), and, unless ``--skip-check``, the model runs
in onnxruntime on random batches of each ``--check-batch`` size (default 1 and 3: other sizes
than the export's, to exercise the dynamic axis) and every output is compared with PyTorch's.
The per-query outputs are compared after matching the queries one-to-one (encoder proposals whose
scores tie within float rounding may be kept in another order; common with random weights); every
difference must be <= ``--atol`` (default 1e-4; for the ``topk`` head's pixel boxes, ``--atol``
times the largest image side), else the tool exits with status 1.

TensorRT engine from the file (dynamic batch 1..8, here with fp16)::

  trtexec --onnx=model.onnx --saveEngine=model.engine --fp16 \\
      --minShapes=images:1x3x640x640 --optShapes=images:1x3x640x640 --maxShapes=images:8x3x640x640

(``topk`` head: add ``orig_target_sizes:1x2`` / ``8x2`` to the shape lists.)

Example::

  python tools/export_onnx.py --config-file projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py \\
      --checkpoint output/model_final.pth --output output/rtdetr_r18.onnx --input-size 640
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.errors import run_main
from mlla_rtdetr.utils.console import tool_log
from mlla_rtdetr.utils.onnx_utils import (
    TENSORRT10_MAX_TOPK,
    TENSORRT10_OPS,
    RawExport,
    TopKExport,
    check_export,
    export,
    onnx_op_counts,
    ops_outside,
)

OP_SETS = {"tensorrt10": TENSORRT10_OPS, "any": None}


log = tool_log("export_onnx")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="recipe or model config (LazyConfig .py)")
    p.add_argument("--checkpoint", default=None,
                   help="weights (default: the config's train.init_checkpoint; '' = random init)")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--input-size", type=int, nargs="+", default=[640], help="H [W] of the exported input")
    p.add_argument("--head", choices=["raw", "topk"], default="raw")
    p.add_argument("--num-top", type=int, default=None, help="K for --head topk (default: model.num_top_queries)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--device", default="cpu", help="where the model is traced (and PyTorch runs for the check)")
    p.add_argument("--no-deploy", action="store_true", help="export without RepVGG folding")
    p.add_argument("--skip-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--check-batch", type=int, nargs="+", default=[1, 3],
                   help="batch sizes of the onnxruntime comparison (the export traces batch 2)")
    p.add_argument("--op-set", choices=sorted(OP_SETS), default="tensorrt10",
                   help="fail when the graph uses an ONNX operator outside this set (any: no check)")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--report", default=None, help="write the comparison as JSON here")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    return p


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.input_size) > 2:
        parser.error("--input-size takes H or H W")
    h, w = args.input_size[0], args.input_size[-1]
    # exact float32 on CUDA: the check compares with onnxruntime's float32 on the CPU
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    log(f"building {args.config_file}")
    cfg = load_config(args.config_file, args.opts)
    model = build_model(cfg, checkpoint=args.checkpoint, device=args.device).eval()
    if not args.no_deploy:
        model.deploy()
    if args.head == "raw":
        wrapper = RawExport(model)
    else:
        k = args.num_top or int(getattr(model, "num_top_queries", 300))
        wrapper = TopKExport(model, num_top=k)
    wrapper.eval()

    log(f"exporting ({args.head} head, {h}x{w}, opset {args.opset}) to {args.output}")
    example = tuple(x.to(args.device) for x in wrapper.example_inputs(2, (h, w), torch.Generator().manual_seed(0)))
    export(wrapper, example, args.output, wrapper.input_names, wrapper.output_names, opset=args.opset)
    result = {"output": args.output, "head": args.head, "input_size": [h, w], "opset": args.opset,
              "device": args.device, "deploy": not args.no_deploy, "inputs": wrapper.input_names, "outputs": wrapper.output_names}

    ops = onnx_op_counts(args.output)
    result["ops"] = ops
    print(f"ONNX operators ({len(ops)}): " + ", ".join(f"{op} x{n}" for op, n in ops.items()))
    failures = []
    allowed = OP_SETS[args.op_set]
    if allowed is not None:
        outside = ops_outside(ops, allowed)
        result["ops_outside_op_set"] = outside
        if outside:
            failures.append(f"operators outside the {args.op_set} set: {', '.join(outside)}")
        if args.head == "topk" and wrapper.num_top >= TENSORRT10_MAX_TOPK:
            failures.append(f"--num-top {wrapper.num_top}: TensorRT's TopK needs K < {TENSORRT10_MAX_TOPK}")
        print(f"operator check ({args.op_set}): " + ("ok" if not failures else "; ".join(failures)))

    if not args.skip_check:
        log(f"checking with onnxruntime at batch sizes {args.check_batch}")
        check = check_export(wrapper, args.output, args.check_batch, (h, w), atol=args.atol)
        result["batches"] = check["batches"]
        result["max_abs_diff"] = check["max_abs_diff"]
        for b, entry in check["batches"].items():
            for name in wrapper.output_names:
                line = (f"batch {b} {name}: shape {entry['shapes'][name]} "
                        f"max |onnx - torch| = {entry['max_abs_diff'][name]:.3e}")
                if "max_abs_diff_matched" in entry:
                    line += (f" (queries matched one-to-one: {entry['max_abs_diff_matched'][name]:.3e}, "
                             f"tolerance {entry['tolerance'][name]:.1e})")
                print(line)
            if entry.get("reordered_queries"):
                print(f"batch {b}: {entry['reordered_queries']} queries came out in another order (near-tied "
                      "encoder scores); compared after matching them one-to-one")
        if not check["passed"]:
            failures.append(f"onnxruntime outputs differ from PyTorch by more than the tolerance ({args.atol})")
    result["passed"] = not failures
    if args.report:
        from mlla_rtdetr.utils.report import write_json

        write_json(args.report, result)
    print(json.dumps({k: result[k] for k in ("output", "head", "passed")}))
    if failures:
        log("FAILED: " + "; ".join(failures))
        sys.exit(1)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
