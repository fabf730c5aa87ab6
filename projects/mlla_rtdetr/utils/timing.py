"""Latency measurement and peak-memory probes.

* :func:`measure` runs a callable ``warmup`` times unmeasured, then ``iters`` times measured
  (synchronizing CUDA around each call) and returns :class:`TimingStats` (median first: means are
  skewed by the occasional slow call on a shared machine).
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` around the call; on CPU the process'
  peak resident set size (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` before the call,
  falling back to ``ru_maxrss``). CPU peaks are only meaningful in a fresh process (the allocator
  keeps freed memory), so the benchmark tool runs each CPU memory case through
  ``python -m mlla_rtdetr.utils.memprobe`` (with a fixed glibc mmap threshold, so that freed
  tensor buffers leave the resident set).
"""
from __future__ import annotations

import dataclasses
import gc
import resource
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

import torch


@dataclasses.dataclass
class TimingStats:
    """Wall-clock times of the measured calls, in milliseconds."""

    times_ms: List[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times_ms)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.times_ms)

    @property
    def min(self) -> float:
        return min(self.times_ms)

    @property
    def max(self) -> float:
        return max(self.times_ms)

    def percentile(self, q: float) -> float:
        xs = sorted(self.times_ms)
        idx = min(len(xs) - 1, max(0, int(round(q / 100.0 * (len(xs) - 1)))))
        return xs[idx]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "median_ms": self.median,
            "mean_ms": self.mean,
            "std_ms": self.std,
            "min_ms": self.min,
            "p90_ms": self.percentile(90),
            "max_ms": self.max,
            "iters": len(self.times_ms),
        }


def synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], warmup: int = 3, iters: int = 10, device: Optional[str] = None,
            progress: Optional[Callable[[str], None]] = None) -> TimingStats:
    """Time ``fn()``: ``warmup`` unmeasured calls, then ``iters`` measured ones.

    Args:
        fn: a callable without arguments (closes over model and inputs).
        device: the device ``fn`` runs on; CUDA is synchronized before and after each call.
        progress: optional callback receiving a short status line every few calls.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for i in range(warmup):
        fn()
        if progress and (i == 0 or (i + 1) % 5 == 0):
            progress(f"warm-up {i + 1}/{warmup}")
    synchronize(device)
    times = []
    for i in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
        if progress and ((i + 1) % 5 == 0 or i + 1 == iters):
            progress(f"iter {i + 1}/{iters}: median so far {statistics.median(times):.1f} ms")
    return TimingStats(times)


def measure_interleaved(fns: Dict[str, Callable[[], Any]], warmup: int = 3, iters: int = 10,
                        device: Optional[str] = None,
                        progress: Optional[Callable[[str], None]] = None) -> Dict[str, TimingStats]:
    """Time several callables call by call in turn (a, b, a, b, ...), so that each sees the same
    background load on a shared machine; ratios between them are then far less noisy than from
    separate runs. Each gets ``warmup`` unmeasured calls first."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        if progress:
            progress(f"{name}: warmed up ({warmup} calls)")
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for i in range(iters):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
        if progress and ((i + 1) % 5 == 0 or i + 1 == iters):
            progress(f"round {i + 1}/{iters}: " + ", ".join(
                f"{k} {statistics.median(v):.1f} ms" for k, v in times.items()))
    return {k: TimingStats(v) for k, v in times.items()}


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def _read_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_memory(fn: Callable[[], Any], device: Optional[str] = None) -> Dict[str, Any]:
    """Peak memory of one call of ``fn()``.

    Returns ``{"peak_mb": extra memory at the peak of the call beyond what was in use before it,
    "total_peak_mb": absolute peak (process RSS on CPU; allocated tensors on CUDA), "method": ...}``.
    """
    gc.collect()
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mb": (peak - before) / 2**20, "total_peak_mb": peak / 2**20,
                "method": "torch.cuda.max_memory_allocated"}
    before_kb = _read_status_kb("VmRSS")
    if before_kb is not None and _reset_peak_rss():
        fn()
        peak_kb = _read_status_kb("VmHWM")
        method = "VmHWM (peak RSS, reset before the call)"
    else:  # ru_maxrss cannot be reset: only the part above the earlier high-water mark shows
        before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "ru_maxrss delta"
    return {"peak_mb": max(0, peak_kb - before_kb) / 1024, "total_peak_mb": peak_kb / 1024, "method": method}
