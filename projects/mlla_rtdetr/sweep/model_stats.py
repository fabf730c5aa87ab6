"""Parameter and FLOP counts and latency of a run's model, from its config (for result tables).

Parameters are counted on the ``meta`` device (no memory, no weight init cost). GFLOPs come from
fvcore on ``model.forward_raw`` through :mod:`mlla_rtdetr.utils.flops`, as in
tools/analyze_model.py (GFLOPs = 2 x fvcore's multiply-add count). Latency is timed as
tools/benchmark.py's ``inference`` mode does it (the same benchmark cases; every model timed
interleaved, call by call, so that background load on a shared machine hits them alike).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch

logger = logging.getLogger(__name__)


def load_run_config(record: dict, run_dir: Optional[Path] = None):
    """The LazyConfig a run trained with: its base config + overrides (from ``sweep_run.json``),
    else the ``config.yaml`` detectron2 saved in the run directory. None if neither loads."""
    from mlla_rtdetr.engine import load_config

    cfg_file = record.get("config_file")
    if cfg_file and Path(cfg_file).is_file():
        overrides = [o for o in record.get("overrides", []) if not o.startswith("train.output_dir=")]
        return load_config(cfg_file, overrides)
    if run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        try:
            return load_config(str(Path(run_dir) / "config.yaml"))
        except Exception as e:  # configs with non-serializable objects cannot round-trip
            logger.warning(f"Cannot load {Path(run_dir) / 'config.yaml'}: {e}")
    return None


def model_key(cfg) -> str:
    """Identity of the model part of a config (runs differing only in seed/schedule share it)."""
    from omegaconf import OmegaConf

    text = OmegaConf.to_yaml(cfg.model, resolve=False)
    return hashlib.sha1(text.encode()).hexdigest()


def count_params(cfg) -> int:
    """Number of (unique) parameters of ``instantiate(cfg.model)``."""
    from mlla_rtdetr.config import instantiate_on_meta

    model = instantiate_on_meta(cfg.model)
    return sum(p.numel() for p in model.parameters())


_SIZE_KEYS = ("model.eval_size", "model.encoder.eval_spatial_size", "model.decoder.eval_spatial_size",
              "dataloader.test.mapper.image_size")


def default_input_size(cfg) -> Tuple[int, int]:
    """(H, W) the model is evaluated at: the first of ``model.eval_size``, the encoder/decoder
    ``eval_spatial_size`` and the test mapper's ``image_size`` that is set; else 640x640."""
    from omegaconf import OmegaConf

    for key in _SIZE_KEYS:
        size = OmegaConf.select(cfg, key, default=None)
        if size is None:
            continue
        if isinstance(size, int):
            return size, size
        return int(size[0]), int(size[1])
    return 640, 640


def count_gflops(cfg, input_size: Optional[Sequence[int]] = None) -> float:
    """GFLOPs of one image through ``model.forward_raw`` at ``input_size`` (H, W), in eval mode
    and deploy form (RepVGG fused) if the model has ``deploy()``; the project's convention of
    tools/analyze_model.py (:func:`mlla_rtdetr.utils.flops.model_flops`: GFLOPs = 2 x GMACs)."""
    from mlla_rtdetr.engine import build_model
    from mlla_rtdetr.utils.flops import model_flops

    h, w = input_size or default_input_size(cfg)
    model = build_model(cfg, checkpoint="").eval()
    if hasattr(model, "deploy"):
        model.deploy()
    if not hasattr(model, "forward_raw"):
        raise TypeError(f"{type(model).__name__} has no forward_raw(images); cannot count FLOPs.")
    return model_flops(model, h, w, batch_size=1).gflops


class StatsCache:
    """Computes params (and optionally GFLOPs) once per distinct model config."""

    def __init__(self, gflops: bool = False, input_size: Optional[Sequence[int]] = None):
        self.gflops = gflops
        self.input_size = input_size
        self._cache: Dict[str, Dict[str, float]] = {}

    def stats(self, record: dict, run_dir: Path) -> Dict[str, float]:
        cfg = load_run_config(record, run_dir)
        if cfg is None:
            return {}
        key = model_key(cfg)
        if key not in self._cache:
            out: Dict[str, float] = {"params": count_params(cfg)}
            if self.gflops:
                out["gflops"] = count_gflops(cfg, self.input_size)
                out["gflops_input_size"] = list(self.input_size or default_input_size(cfg))
            self._cache[key] = out
        return dict(self._cache[key])


def inference_spec(record: dict, input_size: Sequence[int], threads: Optional[int] = None,
                   device: str = "cpu") -> dict:
    """The tools/benchmark.py ``inference`` case of a run's model: ``forward_raw`` of one image at
    ``input_size`` (H, W) after ``deploy()``, random weights (latency does not depend on them)."""
    overrides = [o for o in record.get("overrides", []) if not o.startswith("train.output_dir=")]
    return {"kind": "inference", "config_file": record["config_file"], "overrides": overrides,
            "input_size": [int(input_size[0]), int(input_size[-1])], "batch_size": 1, "deploy": True,
            "device": device, "threads": threads, "seed": 0}


def measure_latencies(specs: Dict[str, dict], warmup: int = 3, iters: int = 10,
                      progress=None) -> Dict[str, dict]:
    """Median latency (ms) of each benchmark case, all timed interleaved in this process.

    Returns ``{key: {"latency_ms": median, "latency_min_ms": min, "latency_setup": {...}}}``.
    """
    from mlla_rtdetr.utils.bench_cases import build_case
    from mlla_rtdetr.utils.timing import measure_interleaved

    cases = {key: build_case(spec) for key, spec in specs.items()}
    device = next(iter(cases.values())).device if cases else "cpu"
    stats = measure_interleaved({k: c.fn for k, c in cases.items()}, warmup=warmup, iters=iters,
                                device=device, progress=progress)
    out = {}
    for key, spec in specs.items():
        setup = {"input_size": spec["input_size"], "batch_size": 1, "deploy": True, "device": device,
                 "threads": torch.get_num_threads(), "iters": iters,
                 "method": f"median of {iters} calls interleaved with {len(specs) - 1} other model(s)"}
        out[key] = {"latency_ms": stats[key].median, "latency_min_ms": stats[key].min, "latency_setup": setup}
    return out

