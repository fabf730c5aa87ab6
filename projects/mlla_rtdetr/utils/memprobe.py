"""Peak memory of one benchmark case, measured in this fresh process.

Usage: ``python -m mlla_rtdetr.utils.memprobe '<json spec>'`` (see :mod:`.bench_cases`). Builds the
case, runs it once to warm up (lazy allocations, optimizer state), then measures one more call with
:func:`.timing.measure_peak_memory` and prints one JSON line ``{"peak_mb", "total_peak_mb",
"method"}`` as the last line of stdout.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Dict, Optional

MARKER = "MEMPROBE_RESULT "


def probe(spec: Dict[str, Any]) -> Dict[str, Any]:
    from .bench_cases import build_case
    from .timing import measure_peak_memory

    case = build_case(spec)
    case.fn()
    return measure_peak_memory(case.fn, case.device)


def run_in_subprocess(spec: Dict[str, Any], timeout: Optional[float] = 900) -> Dict[str, Any]:
    """Run :func:`probe` for ``spec`` in a fresh Python process; returns its result dict."""
    import os
    import subprocess

    # A fixed glibc mmap threshold (it otherwise grows up to 32 MiB after the first frees) makes
    # every large tensor buffer its own mapping, returned to the OS when freed: the resident set
    # then follows the live tensors, and the peak of the measured call is not hidden by memory
    # that the warm-up call freed into the heap.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run(
        [sys.executable, "-m", "mlla_rtdetr.utils.memprobe", json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise RuntimeError(
        f"memory probe failed (exit {proc.returncode}) for {spec}:\n{proc.stderr[-3000:]}"
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    result = probe(json.loads(argv[0]))
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
