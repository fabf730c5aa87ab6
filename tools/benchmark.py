#!/usr/bin/env python
"""Speed and memory benchmarks of MLLA-RT-DETR models (CPU or GPU).

Every mode warms up, reports the median (and minimum) of the measured calls, prints a markdown
table and writes all numbers (plus the environment) to ``--output`` as JSON. Ratios are always
against a baseline measured in the same run, and the cases compared with each other (every model
and variant of one input size and batch; all sizes and attentions of one encoder level set; all
attention cases) are timed interleaved, call by call, so that background load on a shared machine
hits them alike. Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the peak resident
set size of a fresh process per case (``python -m mlla_rtdetr.utils.memprobe``), reported as the
extra memory of one call beyond the model and inputs already in memory.

Modes::

  inference        latency / throughput of model.forward_raw for batch sizes x input sizes, with and
                   without deploy() (the inference form), channels-last, torch.compile, autocast
                   fp16 / bf16 (--precision), and in onnxruntime (--onnxruntime: the model exported to
                   ONNX as tools/export_onnx.py does, run by an onnxruntime CPU session); --flops adds
                   GFLOPs, ms per GFLOP and the official GFLOPs count (with ratios to the baseline).
  train-step       time of one optimizer step (forward with random targets, loss, backward, AdamW
                   step; autocast and loss scaling with --precision fp16 / bf16).
  encoder-scaling  softmax AIFI vs MLLA intra-scale blocks at several input sizes, on S5 only
                   (use_encoder_idx=2) and S4+S5 (1,2); ratio of the time at 2x the side (4x tokens).
  attention        one MLLA linear-attention layer vs one softmax attention layer of the same width.
  data             images/s of the training data pipeline per worker count, and of a training step;
                   --dense-o2o adds DEIM's Dense O2O pipeline (Mosaic on every sample / on none, MixUp,
                   batch multi-scale) on the same data, with its ratio to the recipe's pipeline.
  image-check      the existence check run before training (one stat per image path) on a generated
                   list of paths (default 118,287, the size of COCO train2017; 1% missing), with one
                   thread and with the threads training uses.
  step-flags       the cost of the training step's shared stop flags with --processes gloo processes
                   on CPU: the real trainer step with no flag collective, with the one all-reduce it
                   runs, and with the three collectives it had before (ratios vs no flags), and the
                   flag collectives alone.

``inference`` and ``train-step`` measure any list of models in one run: our recipes
(``--config-file A.py B.py ...``) and official RT-DETR models from a checkout of
https://github.com/lyuwenyu/RT-DETR (``--official-root DIR --official-config NAME ...``, built
from ``rtdetrv2_pytorch/configs/**/NAME.yml`` with random weights; the official training step is
``model(images, targets)`` + its criterion, as its ``train_one_epoch``). ``time_vs_baseline`` is
each row's median time over the ``--baseline`` model's (same size, batch and variant).

Examples::

  python tools/benchmark.py inference --config-file projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py \\
      --input-sizes 640 --batch-sizes 1 --threads 2 --deploy both --output out/r18.json
  python tools/benchmark.py inference --config-file projects/mlla_rtdetr/configs/rtdetrv2_r18vd_120e_coco.py \\
      --official-root ../RT-DETR --official-config rtdetrv2_r18vd_120e_coco \\
      --baseline official/rtdetrv2_r18vd_120e_coco --deploy on --onnxruntime both --batch-sizes 1 8
  python tools/benchmark.py encoder-scaling --config-file projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py
  python tools/benchmark.py attention --tokens 400 6400
  python tools/benchmark.py image-check --paths 118287
  python tools/benchmark.py step-flags --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from typing import Any, Dict, List

import torch

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.errors import ConfigError, run_main
from mlla_rtdetr.utils.console import tool_log
from mlla_rtdetr.utils.bench_cases import build_case, detector_gflops
from mlla_rtdetr.utils.memprobe import run_in_subprocess
from mlla_rtdetr.utils.report import environment, markdown_table, ratio, write_json
from mlla_rtdetr.utils.timing import measure, measure_interleaved, measure_peak_memory


log = tool_log("benchmark")


def on_off(value: str) -> List[bool]:
    return {"off": [False], "on": [True], "both": [False, True]}[value]


def channels_last_options(value: str) -> List[Optional[bool]]:
    """``auto``: the model's own layout (ours: channels-last on CPU, NCHW on GPU; official: NCHW)."""
    return [None] if value == "auto" else on_off(value)


def parse_levels(text: str) -> List[int]:
    try:
        levels = [int(x) for x in text.split(",") if x != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels must look like '2' or '1,2', got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("empty level list")
    return levels


LEVEL_NAMES = {0: "S3", 1: "S4", 2: "S5"}


def level_name(levels: List[int]) -> str:
    return "+".join(LEVEL_NAMES.get(i, f"L{i}") for i in levels)


# ------------------------------------------------------------------------------------------------
def run_group(specs: List[Dict[str, Any]], labels: List[str], args) -> List[Dict[str, Any]]:
    """Time the cases of one comparison group interleaved call by call (same background load for
    all, so their ratios are robust on a shared machine), then measure each one's peak memory
    unless --no-memory. Returns one result row per spec."""
    cases = []
    for spec, label in zip(specs, labels):
        log(f"{label}: building")
        cases.append(build_case(spec))
    # CUDA is synchronized around every call when any case runs there (onnxruntime cases run on the CPU)
    device = next((c.device for c in cases if torch.device(c.device).type == "cuda"), cases[0].device)
    stats = measure_interleaved({lab: c.fn for lab, c in zip(labels, cases)}, warmup=args.warmup,
                                iters=args.iters, device=device, progress=log)
    rows = []
    for case, label in zip(cases, labels):
        st = stats[label]
        row: Dict[str, Any] = {
            "median_ms": st.median,
            "min_ms": st.min,
            "per_image_ms": st.median / case.images_per_call,
            "throughput_img_s": 1e3 * case.images_per_call / st.median,
            "timing": st.as_dict(),
        }
        row.update({k: v for k, v in case.info.items() if k in ("tokens", "params")})
        rows.append(row)
        log(f"{label}: median {st.median:.2f} ms (min {st.min:.2f})")
    if args.memory:
        on_gpu = [torch.device(c.device).type == "cuda" for c in cases]
        mems = {i: measure_peak_memory(c.fn, c.device) for i, c in enumerate(cases) if on_gpu[i]}
        del cases
        for i, (spec, label) in enumerate(zip(specs, labels)):
            if not on_gpu[i]:
                log(f"{label}: peak memory in a fresh process")
            mem = mems[i] if on_gpu[i] else run_in_subprocess(spec)
            rows[i]["peak_mem_mb"] = mem["peak_mb"]
            rows[i]["total_peak_mem_mb"] = mem["total_peak_mb"]
            rows[i]["memory_method"] = mem["method"]
    return rows


def base_spec(args, kind: str, **extra) -> Dict[str, Any]:
    spec = {"kind": kind, "device": args.device, "threads": args.threads, "seed": 0,
            "tf32": getattr(args, "tf32", "off") == "on"}
    if getattr(args, "config_file", None):
        spec["config_file"] = args.config_file
        spec["overrides"] = list(args.opts)
    spec.update(extra)
    return spec


# ------------------------------------------------------------------------------------------------
def config_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def model_entries(args) -> List[Dict[str, Any]]:
    """The models of one run, in order: ours (``--config-file``), then the official ones
    (``--official-config``); each ``{"name", "spec"}`` with the spec keys that select it."""
    entries = [{"name": config_name(c), "spec": {"config_file": c, "overrides": list(args.opts)}}
               for c in args.config_files]
    if args.official_config:
        from mlla_rtdetr.utils.official import official_name, resolve_official_config

        root = os.path.abspath(args.official_root) if args.official_root else ""
        for c in args.official_config:
            path = resolve_official_config(root, c)
            entries.append({"name": official_name(path), "spec": {"official_root": root, "official_config": path}})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise SystemExit(f"Two models of this run have the same name: {names}")
    if not entries:
        raise SystemExit("Nothing to measure: give --config-file and/or --official-config.")
    return entries


def variants(args, train: bool) -> List[Dict[str, Any]]:
    """The measured variants of every model: PyTorch with each combination of the deploy /
    channels-last / compile / precision options asked for, plus onnxruntime (fp32 graph, per
    deploy option) for ``--onnxruntime on|both``. The first one is the plainest."""
    out = []
    ort = "off" if train else args.onnxruntime
    if ort != "on":
        for deploy, cl, comp, prec in itertools.product(on_off(args.deploy), channels_last_options(args.channels_last),
                                                        on_off(args.compile), args.precision):
            out.append({"runtime": "torch", "deploy": deploy, "channels_last": cl, "compile": comp, "precision": prec})
    if ort != "off":
        for deploy in on_off(args.deploy):
            out.append({"runtime": "onnxruntime", "deploy": deploy, "channels_last": False, "compile": False,
                        "precision": "fp32"})
    return out


VARIANT_KEYS = ("runtime", "deploy", "channels_last", "compile", "precision")


def mode_inference(args, train: bool = False) -> Dict[str, Any]:
    kind = "train_step" if train else "inference"
    entries = model_entries(args)
    names = [e["name"] for e in entries]
    baseline = args.baseline or names[0]
    if baseline not in names:
        raise SystemExit(f"--baseline {baseline!r} is none of the measured models: {', '.join(names)}")
    rows = []
    groups = list(itertools.product(args.input_sizes, args.batch_sizes))
    for g, (size, bs) in enumerate(groups):  # every model and variant of one size/batch is interleaved
        specs, labels, heads = [], [], []
        for entry in entries:
            for var in variants(args, train):
                spec = base_spec(args, kind, input_size=size, batch_size=bs, checkpoint=args.checkpoint or "", **var)
                spec.pop("config_file", None)
                spec.pop("overrides", None)
                spec.update(entry["spec"])
                specs.append(spec)
                labels.append(f"[{g + 1}/{len(groups)}] {entry['name']} {kind} size={size} batch={bs} "
                              + " ".join(f"{k}={v}" for k, v in var.items()))
                heads.append({"config": entry["name"], "input_size": size, "batch_size": bs, **var})
        for head, row in zip(heads, run_group(specs, labels, args)):
            rows.append({**head, **row})
    key = lambda r: (r["config"], r["input_size"], r["batch_size"])  # noqa: E731
    plain = {}  # the first variant measured: every option off among those asked for
    for r in rows:
        plain.setdefault(key(r), r)
    same_variant = lambda r: (r["input_size"], r["batch_size"]) + tuple(r[k] for k in VARIANT_KEYS)  # noqa: E731
    base_rows = {same_variant(r): r for r in rows if r["config"] == baseline}
    for row in rows:
        base = plain.get(key(row))
        row["speedup_vs_plain"] = ratio(base["median_ms"], row["median_ms"]) if base else None
        # vs the baseline model: the same variant when it was measured, else its plainest one
        ref = base_rows.get(same_variant(row)) or plain.get((baseline, row["input_size"], row["batch_size"]))
        row["time_vs_baseline"] = ratio(row["median_ms"], ref["median_ms"]) if ref else None
        row["baseline_variant"] = {k: ref[k] for k in VARIANT_KEYS} if ref else None
    flops = getattr(args, "flops", False)
    if flops:
        add_flops(rows, entries, args, baseline, same_variant)
    varying = [k for k in VARIANT_KEYS if len({r[k] for r in rows}) > 1]
    cols = (["config"] if len(entries) > 1 else []) + ["input_size", "batch_size"] + varying + [
        "median_ms", "min_ms", "per_image_ms", "throughput_img_s"] + (
        ["speedup_vs_plain"] if varying else []) + (["time_vs_baseline"] if len(entries) > 1 else []) + (
        ["gflops", "ms_per_gflop"] + (["ms_per_gflop_vs_baseline"] if len(entries) > 1 else []) + ["official_gflops"]
        + (["official_gflops_vs_baseline"] if len(entries) > 1 else []) if flops else []) + (
        ["peak_mem_mb"] if args.memory else [])
    title = "Training step (forward + loss + backward + AdamW step)" if train else "Inference (forward_raw)"
    if len(entries) > 1:
        title += f"; time_vs_baseline = median time / {baseline}'s"
    fixed = {k: rows[0][k] for k in VARIANT_KEYS if k not in varying}
    if fixed:
        title += "; " + ", ".join(f"{k}={v}" for k, v in fixed.items())
    return {"rows": rows, "baseline": baseline, "tables": [(title, markdown_table(rows, cols))]}


def add_flops(rows, entries, args, baseline: str, same_variant) -> None:
    """GFLOPs per image of every model and size (counted once, on the eval-mode model as
    ``tools/analyze_model.py`` does), the cost per GFLOP of every row (``per_image_ms / gflops``) and
    its ratio to the baseline model's in the same variant: how efficiently each architecture turns
    its arithmetic into speed; plus the official count (``official_gflops``) and its ratio to the
    baseline's."""
    gflops = {}
    for entry, size in itertools.product(entries, args.input_sizes):
        log(f"{entry['name']}: counting GFLOPs at {size}")
        spec = base_spec(args, "inference", input_size=size, batch_size=1, checkpoint=args.checkpoint or "")
        spec.pop("config_file", None)
        spec.pop("overrides", None)
        spec.update(entry["spec"])
        gflops[(entry["name"], size)] = detector_gflops(spec)
    for r in rows:
        r.update(gflops[(r["config"], r["input_size"])])
        r["ms_per_gflop"] = r["per_image_ms"] / r["gflops"] if r["gflops"] else None
    base_rows = {same_variant(r): r for r in rows if r["config"] == baseline}
    for r in rows:
        ref = base_rows.get(same_variant(r))
        r["ms_per_gflop_vs_baseline"] = ratio(r["ms_per_gflop"], ref["ms_per_gflop"]) if ref else None
        r["official_gflops_vs_baseline"] = ratio(r["official_gflops"], ref["official_gflops"]) if ref else None


def mode_encoder_scaling(args) -> Dict[str, Any]:
    kind = "encoder_blocks" if args.scope == "blocks" else "encoder"
    rows = []
    for g, levels in enumerate(args.levels):  # every size and attention of one level set is interleaved
        combos = list(itertools.product(args.attentions, args.input_sizes))
        specs = [base_spec(args, kind, input_size=size, batch_size=args.batch_size, attention=attn,
                           use_encoder_idx=levels, channels_last=args.channels_last == "on") for attn, size in combos]
        labels = [f"[{g + 1}/{len(args.levels)}] {kind} {attn} {level_name(levels)} size={size}" for attn, size in combos]
        for (attn, size), row in zip(combos, run_group(specs, labels, args)):
            rows.append({"attention": attn, "levels": level_name(levels), "input_size": size, **row})
    order = {level_name(lv): i for i, lv in enumerate(args.levels)}
    rows.sort(key=lambda r: (order[r["levels"]], args.attentions.index(r["attention"]), r["input_size"]))
    ref_size = min(args.input_sizes)
    summary = []
    for levels, attn in itertools.product(args.levels, args.attentions):
        group = {r["input_size"]: r for r in rows if r["attention"] == attn and r["levels"] == level_name(levels)}
        base = group[ref_size]
        for size, r in sorted(group.items()):
            r["time_ratio_vs_smallest"] = ratio(r["median_ms"], base["median_ms"])
            r["min_time_ratio_vs_smallest"] = ratio(r["min_ms"], base["min_ms"])
            r["token_ratio_vs_smallest"] = ratio(r["tokens"], base["tokens"])
        entry = {"attention": attn, "levels": level_name(levels), "from_size": ref_size}
        double = 2 * ref_size
        if double in group:
            entry["to_size"] = double
            entry["token_ratio"] = ratio(group[double]["tokens"], base["tokens"])
            entry["time_ratio"] = ratio(group[double]["median_ms"], base["median_ms"])
            entry["time_ratio_of_min"] = ratio(group[double]["min_ms"], base["min_ms"])
            if args.memory:
                entry["mem_ratio"] = ratio(group[double].get("peak_mem_mb"), base.get("peak_mem_mb"))
        summary.append(entry)
    for r in rows:  # MLLA vs softmax at the same size / levels
        soft = next((s for s in rows if s["attention"] == "softmax" and s["levels"] == r["levels"]
                     and s["input_size"] == r["input_size"]), None)
        r["time_vs_softmax"] = ratio(r["median_ms"], soft["median_ms"]) if soft else None
    cols = ["attention", "levels", "input_size", "tokens", "median_ms", "min_ms", "time_ratio_vs_smallest",
            "min_time_ratio_vs_smallest", "token_ratio_vs_smallest", "time_vs_softmax"] + (["peak_mem_mb"] if args.memory else [])
    scope = "intra-scale blocks only" if args.scope == "blocks" else "whole hybrid encoder"
    return {
        "rows": rows, "summary": summary,
        "tables": [(f"Encoder scaling ({scope}, batch {args.batch_size})", markdown_table(rows, cols)),
                   (f"Time ratio {ref_size} -> {2 * ref_size} (4x tokens: ~4x linear, ~16x quadratic)",
                    markdown_table(summary))],
    }


def mode_attention(args) -> Dict[str, Any]:
    rows = []
    combos = list(itertools.product(args.attentions, args.tokens))  # all interleaved
    specs = [base_spec(args, "attention", attention=attn, tokens=tokens, dim=args.dim, num_heads=args.heads,
                       batch_size=args.batch_size) for attn, tokens in combos]
    labels = [f"attention {attn} tokens={tokens}" for attn, tokens in combos]
    for (attn, tokens), row in zip(combos, run_group(specs, labels, args)):
        rows.append({"attention": attn, "tokens": tokens, "dim": args.dim, "heads": args.heads, **row})
    rows.sort(key=lambda r: (args.attentions.index(r["attention"]), args.tokens.index(r["tokens"])))
    lo = min(args.tokens)
    for r in rows:
        base = next(s for s in rows if s["attention"] == r["attention"] and s["tokens"] == lo)
        r["time_ratio_vs_fewest_tokens"] = ratio(r["median_ms"], base["median_ms"])
        soft = next((s for s in rows if s["attention"] == "softmax" and s["tokens"] == r["tokens"]), None)
        r["time_vs_softmax"] = ratio(r["median_ms"], soft["median_ms"]) if soft else None
    cols = ["attention", "tokens", "dim", "heads", "median_ms", "min_ms", "time_ratio_vs_fewest_tokens", "time_vs_softmax"] + (
        ["peak_mem_mb"] if args.memory else [])
    return {"rows": rows, "tables": [("Attention micro-benchmark", markdown_table(rows, cols))]}


def dense_o2o_variants(train_cfg) -> List[tuple]:
    """``[(name, loader config)]``: the recipe's train loader and DEIM's Dense O2O pipeline on the
    same data and output size, in its Mosaic stage with Mosaic on every sample and with Mosaic on
    none (both with MixUp 0.5 and the batch-level multi-scale of ``coco_detection_dense_o2o.py``,
    sizes scaled to the recipe's)."""
    from omegaconf import OmegaConf

    from mlla_rtdetr.config import get_config
    from mlla_rtdetr.data import multiscale_sizes

    dense = get_config("common/data/coco_detection_dense_o2o.py").dataloader.train
    size = train_cfg.mapper.get("image_size", (640, 640))
    side = int(size if isinstance(size, int) else size[0])
    variants = [("rt-detr", train_cfg)]
    for name, mosaic_prob in (("dense-o2o: Mosaic", 1.0), ("dense-o2o: no Mosaic", 0.0)):
        cfg = OmegaConf.create(OmegaConf.to_container(train_cfg, resolve=True), flags={"allow_objects": True})
        # the recipe's mapper settings plus DEIM's own (Mosaic, policy), in its Mosaic stage from epoch 0
        for key, value in dense.mapper.items():
            if key == "_target_" or key not in cfg.mapper:
                cfg.mapper[key] = value
        cfg.mapper.update(policy_epochs=[0, 10**6, 10**6], mosaic_prob=mosaic_prob, mosaic_output_size=side // 2)
        cfg.batch_augment = OmegaConf.to_container(dense.batch_augment, resolve=False)
        cfg.batch_augment.update(mixup_epochs=[0, 10**6], multiscale_stop_epoch=None,
                                 multiscale_sizes=multiscale_sizes(side, side * 3 // 4 // 32 * 32 or side,
                                                                   side * 5 // 4 // 32 * 32 or side, 32, 3,
                                                                   upper_descending=True))
        cfg.multiscale_sizes = None
        cfg.stop_aug_epoch = None
        variants.append((name, cfg))
    return variants


def mode_data(args) -> Dict[str, Any]:
    from detectron2.config import instantiate

    cfg = load_config(args.config_file, args.opts, require=("dataloader",))
    if "train" not in cfg.dataloader:
        raise ConfigError(f"{args.config_file} defines no dataloader.train; pass a recipe.")
    if args.batch_size:
        cfg.dataloader.train.total_batch_size = args.batch_size
    bs = int(cfg.dataloader.train.total_batch_size)
    pipelines = dense_o2o_variants(cfg.dataloader.train) if args.dense_o2o else [("data pipeline", cfg.dataloader.train)]
    rows = []
    first_batch = None
    for w, (name, train_cfg) in itertools.product(args.workers, pipelines):
        train_cfg.num_workers = w
        log(f"data: {name}, num_workers={w}: building the loader")
        loader = instantiate(train_cfg)
        it = iter(loader)
        for _ in range(args.warmup):
            batch = next(it)
        t0 = time.perf_counter()
        n_img = 0
        for i in range(args.iters):
            batch = next(it)
            n_img += len(batch)
            if (i + 1) % 5 == 0 or i + 1 == args.iters:
                log(f"data: {name}, num_workers={w}: {i + 1}/{args.iters} batches, "
                    f"{n_img / (time.perf_counter() - t0):.1f} img/s")
        dt = time.perf_counter() - t0
        first_batch = first_batch or batch
        row = {"what": name, "num_workers": w, "batch_size": bs, "batches": args.iters,
               "images_per_s": n_img / dt, "images_per_s_per_worker": n_img / dt / max(1, w),
               "ms_per_batch": 1e3 * dt / args.iters}
        if args.dense_o2o:  # the recipe's pipeline ran first at this worker count
            base = row if name == "rt-detr" else next(r for r in rows if r["num_workers"] == w and r["what"] == "rt-detr")
            row["vs_rt_detr"] = row["images_per_s"] / base["images_per_s"]
        rows.append(row)
        del it, loader
    if not args.skip_train_step:
        model = build_model(cfg, checkpoint="", device=args.device).train()
        batch = [{k: (v.to(args.device) if torch.is_tensor(v) else v) for k, v in d.items()} for d in first_batch]
        for d in batch:
            if "instances" in d:
                d["instances"] = d["instances"].to(args.device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            loss = sum(model(batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        stats = measure(step, warmup=1, iters=max(2, args.iters // 2), device=args.device,
                        progress=lambda m: log(f"train step: {m}"))
        size = tuple(first_batch[0]["image"].shape[-2:])
        rows.append({"what": f"train step {size[0]}x{size[1]}", "num_workers": None, "batch_size": len(batch),
                     "batches": len(stats.times_ms), "images_per_s": 1e3 * len(batch) / stats.median,
                     "ms_per_batch": stats.median})
    cols = ["what", "num_workers", "batch_size", "batches", "images_per_s", "images_per_s_per_worker", "ms_per_batch"]
    cols += ["vs_rt_detr"] if args.dense_o2o else []
    return {"rows": rows, "tables": [("Training data pipeline throughput", markdown_table(rows, cols))]}


def mode_image_check(args) -> Dict[str, Any]:
    """Parallel stat of every image path (mlla_rtdetr.data.stat_image_files) on generated files."""
    import shutil
    import tempfile

    from mlla_rtdetr.data.checks import STAT_THREADS, stat_image_files

    folder = tempfile.mkdtemp(prefix="image_check_", dir=args.folder)
    try:
        n, n_missing = args.paths, int(round(args.paths * args.missing))
        paths = [os.path.join(folder, f"{i // 1000:03d}", f"{i:012d}.jpg") for i in range(n)]
        missing = set(range(0, n, max(1, n // max(1, n_missing)))[:n_missing])
        log(f"writing {n - len(missing)} files of 1 byte under {folder}")
        for i, path in enumerate(paths):
            if i % 1000 == 0:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            if i not in missing:
                with open(path, "wb") as f:
                    f.write(b"\0")
        found = {}

        def check(threads):
            return lambda: found.setdefault(threads, stat_image_files(paths, threads=threads))

        cases = {f"{t} thread{'s' if t > 1 else ''}": check(t) for t in sorted({1, args.threads_check or STAT_THREADS})}
        stats = measure_interleaved(cases, warmup=args.warmup, iters=args.iters, progress=log)
        for threads, (miss, _) in found.items():
            if len(miss) != len(missing):
                raise RuntimeError(f"{threads} threads found {len(miss)} missing files, expected {len(missing)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = None
    rows = []
    for label, st in stats.items():
        base = base or st.median
        rows.append({"threads": label, "paths": n, "missing": len(missing), "seconds": st.median / 1e3,
                     "paths_per_s": n / (st.median / 1e3), "speedup": base / st.median})
    cols = ["threads", "paths", "missing", "seconds", "paths_per_s", "speedup"]
    return {"rows": rows, "tables": [("Image existence check before training (median)", markdown_table(rows, cols))]}


def mode_step_flags(args) -> Dict[str, Any]:
    """The trainer step of ``--processes`` gloo processes with and without its flag collective
    (:mod:`mlla_rtdetr.utils.bench_step_flags`)."""
    import json
    import tempfile

    from mlla_rtdetr.launch import launch
    from mlla_rtdetr.utils.bench_step_flags import VARIANTS, run_step_flags_worker

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"config_file": args.config_file, "overrides": list(args.opts), "input_size": args.input_size,
                "batch_size": args.batch_size, "warmup": args.warmup, "iters": args.iters,
                "threads": args.threads or 1, "output": os.path.join(tmp, "timings.json")}
        log(f"{args.processes} gloo processes, {spec['threads']} thread(s) each, {args.batch_size} images of "
            f"{args.input_size} px per process")
        launch(run_step_flags_worker, args.processes, backend="gloo", args=(spec,))
        with open(spec["output"]) as f:
            timings = json.load(f)
    base = timings[VARIANTS[0]]["median_ms"]
    rows = [{"what": name, "processes": args.processes, "median_ms": t["median_ms"], "min_ms": t["min_ms"],
             "time_vs_no_flags": ratio(t["median_ms"], base) if name in VARIANTS else None,
             "timing": t} for name, t in timings.items()]
    cols = ["what", "processes", "median_ms", "min_ms", "time_vs_no_flags"]
    return {"rows": rows, "tables": [("Training step with its stop flags (gloo, CPU)", markdown_table(rows, cols))]}


# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)

    def common(p, needs_config=True, warmup=3, iters=10, several=False):
        if several:
            p.add_argument("--config-file", dest="config_files", nargs="+", default=[],
                           help="recipe or model config(s) (LazyConfig .py); several are timed interleaved, "
                                "with ratios against --baseline")
        elif needs_config:
            p.add_argument("--config-file", required=True, help="recipe or model config (LazyConfig .py)")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--tf32", choices=["off", "on"], default="off",
                       help="TF32 matmuls / convolutions on CUDA (off: exact fp32)")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
        p.add_argument("--warmup", type=int, default=warmup, help="unmeasured calls before timing")
        p.add_argument("--iters", type=int, default=iters, help="measured calls (the median is reported)")
        p.add_argument("--output", default=None, help="JSON file for all numbers (default: print only)")
        p.add_argument("--markdown", default=None, help="also write the markdown tables to this file")
        if needs_config:
            p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                           help="config overrides key=value (e.g. model.num_top_queries=100)")
        else:
            p.set_defaults(opts=[])

    def memory(p, default=True):
        p.add_argument("--memory", dest="memory", action="store_true", default=default,
                       help="measure peak memory per case (fresh process per case on CPU)")
        p.add_argument("--no-memory", dest="memory", action="store_false")

    for name, help_ in (("inference", "model inference latency/throughput"), ("train-step", "training step time")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--input-sizes", type=int, nargs="+", default=[640])
        p.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
        p.add_argument("--deploy", choices=["off", "on", "both"], default="both" if name == "inference" else "off",
                       help="model.deploy(), the inference form of predict.py and evaluation: RepVGG and BatchNorm "
                            "folding, channels-last, fused CPU kernels")
        p.add_argument("--channels-last", choices=["auto", "off", "on", "both"], default="auto",
                       help="images and weights channels-last (on), NCHW (off), or as the model does by "
                            "itself (auto: ours channels-last on CPU and NCHW on GPU, official NCHW)")
        p.add_argument("--compile", choices=["off", "on", "both"], default="off",
                       help="torch.compile the forward (needs a C++ compiler on CPU; slow to start)")
        p.add_argument("--precision", nargs="+", choices=["fp32", "fp16", "bf16"], default=["fp32"],
                       help="fp32, or torch.autocast to fp16 / bf16 (each one a variant)")
        if name == "inference":
            p.add_argument("--flops", action="store_true",
                           help="also count each model's GFLOPs per image (as tools/analyze_model.py) and report "
                                "ms per GFLOP, and its ratio to the baseline model's; plus the official count "
                                "(official_gflops) and its ratio to the baseline's")
            p.add_argument("--onnxruntime", choices=["off", "on", "both"], default="off",
                           help="also (both) or only (on) time the model exported to ONNX (as tools/export_onnx.py "
                                "does) in an onnxruntime CPU session with --threads threads")
        p.add_argument("--checkpoint", default="", help="weights to load (default: random init)")
        p.add_argument("--baseline", default=None,
                       help="model name (as in the table: a config's file name without .py, or "
                            "official/<config>) that time_vs_baseline is relative to; default: the first")
        p.add_argument("--official-root", default=None,
                       help="a checkout of the official RT-DETR (https://github.com/lyuwenyu/RT-DETR) to "
                            "measure official models from")
        p.add_argument("--official-config", nargs="+", default=[],
                       help="official rtdetrv2_pytorch configs (name such as rtdetrv2_r18vd_120e_coco, or "
                            "path) measured beside ours, interleaved, with random weights")
        memory(p)
        common(p, several=True)

    p = sub.add_parser("encoder-scaling", help="softmax vs MLLA encoder vs input size")
    p.add_argument("--input-sizes", type=int, nargs="+", default=[640, 960, 1280, 1600])
    p.add_argument("--levels", type=parse_levels, nargs="+", default=[[2], [1, 2]],
                   help="use_encoder_idx sets, e.g. 2 (S5 only) and 1,2 (S4+S5)")
    p.add_argument("--attentions", nargs="+", default=["softmax", "mlla"])
    p.add_argument("--scope", choices=["blocks", "encoder"], default="blocks",
                   help="time the intra-scale blocks only (the attention part) or the whole hybrid encoder")
    p.add_argument("--channels-last", choices=["off", "on"], default="off",
                   help="feed the maps in channels-last memory, as a deploy()-ed model does")
    p.add_argument("--batch-size", type=int, default=1)
    memory(p)
    common(p, warmup=2, iters=5)

    p = sub.add_parser("attention", help="MLLA linear attention vs softmax attention")
    p.add_argument("--tokens", type=int, nargs="+", default=[400, 6400], help="square numbers (HxW maps)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--attentions", nargs="+", default=["softmax", "mlla"])
    p.add_argument("--batch-size", type=int, default=1)
    memory(p)
    common(p, needs_config=False)

    p = sub.add_parser("data", help="training data pipeline throughput")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=None, help="override dataloader.train.total_batch_size")
    p.add_argument("--skip-train-step", action="store_true")
    p.add_argument("--dense-o2o", action="store_true",
                   help="also DEIM's Dense O2O pipeline (with Mosaic on every sample / on none) on the recipe's "
                        "data; ratios against the recipe's pipeline (vs_rt_detr) at the same worker count")
    p.set_defaults(memory=False)
    common(p, warmup=2, iters=20)

    p = sub.add_parser("image-check", help="the parallel image existence check on generated paths")
    p.add_argument("--paths", type=int, default=118287, help="image paths (default: COCO train2017's count)")
    p.add_argument("--missing", type=float, default=0.01, help="share of the paths without a file")
    p.add_argument("--threads-check", type=int, default=None, help="threads of the check (default: training's)")
    p.add_argument("--folder", default=None, help="where to create the files (default: the temp folder)")
    p.set_defaults(memory=False)
    common(p, needs_config=False, warmup=1, iters=5)

    p = sub.add_parser("step-flags", help="cost of the training step's stop flags with several processes")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=2, help="images per process")
    p.set_defaults(memory=False)
    common(p, warmup=3, iters=30)
    return parser


def main(argv=None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    if getattr(args, "config_files", None):  # nargs="+" also swallows trailing key=value overrides
        args.opts = [c for c in args.config_files if "=" in c] + list(args.opts)
        args.config_files = [c for c in args.config_files if "=" not in c]
    if getattr(args, "official_config", None):
        args.opts = [c for c in args.official_config if "=" in c] + list(args.opts)
        args.official_config = [c for c in args.official_config if "=" not in c]
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "tf32", None):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    if args.iters < 1 or args.warmup < 0:
        raise SystemExit("--iters must be >= 1 and --warmup >= 0")
    mode = {"inference": mode_inference, "train-step": lambda a: mode_inference(a, train=True),
            "encoder-scaling": mode_encoder_scaling, "attention": mode_attention, "data": mode_data,
            "image-check": mode_image_check, "step-flags": mode_step_flags}[args.mode]
    result = mode(args)
    settings = {k: v for k, v in vars(args).items() if k not in ("output", "markdown")}
    payload = {"mode": args.mode, "environment": environment(), "settings": settings,
               **{k: v for k, v in result.items() if k != "tables"}}
    text = "\n\n".join(f"### {title}\n\n{table}" for title, table in result["tables"])
    print(text)
    if args.output:
        write_json(args.output, payload)
        log(f"wrote {args.output}")
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return payload


if __name__ == "__main__":
    sys.exit(run_main(main))
