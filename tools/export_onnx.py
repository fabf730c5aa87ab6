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
pipeline does). The export uses torch's TorchScript-based exporter (``dynamo=False``) at
``--opset`` (default 17). After export the ONNX checker runs and, unless ``--skip-check``, the model
runs in onnxruntime on a random batch of ``--check-batch`` images (a different batch size than the
export's, to exercise the dynamic axis); the max abs difference of every output vs PyTorch is
printed. The per-query outputs are also compared after matching the queries one-to-one (encoder
proposals whose scores tie within float rounding may be kept in another order; common with random
weights); that difference must be <= ``--atol`` (default 1e-4; for the ``topk`` head's pixel boxes, ``--atol``
times the largest image side), else the tool exits with status 1.

Example::

  python tools/export_onnx.py --config-file projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py \\
      --checkpoint output/model_final.pth --output output/rtdetr_r18.onnx --input-size 640
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.errors import run_main
from mlla_rtdetr.utils.onnx_utils import (
    RawExport,
    TopKExport,
    compare,
    compare_up_to_query_order,
    export,
    run_onnxruntime,
)


def log(msg: str) -> None:
    print(f"[export_onnx {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
    p.add_argument("--no-deploy", action="store_true", help="export without RepVGG folding")
    p.add_argument("--skip-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--check-batch", type=int, default=3)
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
    log(f"building {args.config_file}")
    cfg = load_config(args.config_file, args.opts)
    model = build_model(cfg, checkpoint=args.checkpoint, device="cpu").eval()
    if not args.no_deploy:
        model.deploy()
    if args.head == "raw":
        wrapper = RawExport(model)
    else:
        k = args.num_top or int(getattr(model, "num_top_queries", 300))
        wrapper = TopKExport(model, num_top=k)
    wrapper.eval()

    g = torch.Generator().manual_seed(0)

    def make_inputs(n):
        images = torch.rand(n, 3, h, w, generator=g)
        if args.head == "raw":
            return (images,)
        sizes = torch.stack([torch.randint(64, 2000, (n,), generator=g), torch.randint(64, 2000, (n,), generator=g)], 1)
        return images, sizes

    log(f"exporting ({args.head} head, {h}x{w}, opset {args.opset}) to {args.output}")
    # Traced at batch 2: tracing at batch 1 lets size-1 broadcasting specialise some reshapes.
    export(wrapper, make_inputs(2), args.output, wrapper.input_names, wrapper.output_names, opset=args.opset)
    result = {"output": args.output, "head": args.head, "input_size": [h, w], "opset": args.opset,
              "deploy": not args.no_deploy, "inputs": wrapper.input_names, "outputs": wrapper.output_names}
    if not args.skip_check:
        inputs = make_inputs(args.check_batch)
        log(f"checking with onnxruntime on a batch of {args.check_batch}")
        with torch.no_grad():
            ref = wrapper(*inputs)
        outs = run_onnxruntime(args.output, {n: x.numpy() for n, x in zip(wrapper.input_names, inputs)})
        diffs = compare(ref, outs, wrapper.output_names)
        result["shapes"] = {k: v.get("shape") for k, v in diffs.items()}
        result["max_abs_diff"] = {k: v["max_abs_diff"] for k, v in diffs.items()}
        if any(v.get("shape") is None for v in diffs.values()):
            result["passed"] = False
        else:
            matched = compare_up_to_query_order(ref, outs, wrapper.output_names)
            result["max_abs_diff_matched"] = matched["max_abs_diff"]
            result["reordered_queries"] = matched["reordered_queries"]
            tol = {n: args.atol for n in wrapper.output_names}
            if args.head == "topk":  # absolute pixel boxes: the tolerance holds for normalized ones
                tol["boxes"] = args.atol * float(inputs[1].max())
            result["tolerance"] = tol
            result["passed"] = all(v <= tol[k] for k, v in matched["max_abs_diff"].items())
        for name, d in diffs.items():
            line = f"{name}: shape {d.get('shape')} max |onnx - torch| = {d['max_abs_diff']:.3e}"
            if "max_abs_diff_matched" in result:
                line += f" (queries matched one-to-one: {result['max_abs_diff_matched'][name]:.3e})"
            print(line)
        if result.get("reordered_queries"):
            print(f"{result['reordered_queries']} queries came out in another order (near-tied encoder "
                  "scores); compared after matching them one-to-one")
    if args.report:
        from mlla_rtdetr.utils.report import write_json

        write_json(args.report, result)
    print(json.dumps({k: result[k] for k in ("output", "head", "passed") if k in result}))
    if result.get("passed") is False:
        log(f"FAILED: onnxruntime outputs differ from PyTorch by more than {args.atol}")
        sys.exit(1)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
