#!/usr/bin/env python
"""Mutation check of the parity tests: each mistake that the fixtures README lists must make every
parity test file fail, on any CPU.

Run it as a script (from the repository root)::

    python scripts/parity_mutations.py                    # every mutation x every parity file
    python scripts/parity_mutations.py --mutations ln_eps --isa avx2

Each (mutation, test file) pair runs ``pytest -x`` in a fresh process with this file loaded as a
pytest plugin (``-p parity_mutations``) and ``MLLA_RTDETR_MUTATION`` naming the mistake; the plugin
plants it in the project's code before any test runs. The table lists the test that caught it. A
mutation that a file does not catch is a hole in the tests: exit status 1. ``--isa avx2|default``
runs everything under those CPU kernels (``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA``).

The mistakes (fixtures README, "Tolerances", plus the two a training test must catch):

    bn_eps       BatchNorm / FrozenBatchNorm eps 1e-3 instead of 1e-5
    weight_off   one weight of a loaded checkpoint off by 1e-3 (the first encoder / block weight)
    rope_axes    MLLA's 2D RoPE with the H and W axes swapped (MLLA only)
    ln_eps       LayerNorm eps 1e-6 instead of 1e-5
    loss_weight  the GIoU loss weighted 2.2 instead of 2 (detectors only)
    aux_dropped  the first decoder layer's auxiliary losses dropped (detectors only)
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "MLLA_RTDETR_MUTATION"
DETECTOR_FILES = ["tests/test_rtdetr_parity.py", "tests/test_training_parity.py"]
MLLA_FILES = ["tests/test_mlla_parity.py"]
MUTATIONS = {  # name -> the parity files that must catch it
    "bn_eps": DETECTOR_FILES + MLLA_FILES,
    "weight_off": DETECTOR_FILES + MLLA_FILES,
    "rope_axes": MLLA_FILES,
    "ln_eps": DETECTOR_FILES + MLLA_FILES,
    "loss_weight": DETECTOR_FILES,
    "aux_dropped": DETECTOR_FILES,
}
ISA = {"avx2": ("avx2", "AVX2"), "default": ("default", "SSE41")}


# ----------------------------------------------------------------------------- the plugin side
def _force_eps(cls, eps):
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.eps = eps

    cls.__init__ = __init__


def _plant(name: str) -> None:
    import torch
    import torchvision

    if name == "bn_eps":
        for cls in (torch.nn.BatchNorm2d, torchvision.ops.FrozenBatchNorm2d):
            _force_eps(cls, 1e-3)
    elif name == "ln_eps":
        _force_eps(torch.nn.LayerNorm, 1e-6)
    elif name == "weight_off":
        load = torch.nn.Module.load_state_dict

        def load_state_dict(self, state_dict, *args, **kwargs):
            keys = [k for k, v in state_dict.items() if v.is_floating_point() and v.dim() >= 2]
            target = next((k for k in keys if re.search(r"(^|\.)(encoder|blocks)\.", k)), None)
            if target is not None:
                state_dict = dict(state_dict)
                state_dict[target] = state_dict[target].clone()
                state_dict[target].view(-1)[0] += 1e-3
            return load(self, state_dict, *args, **kwargs)

        torch.nn.Module.load_state_dict = load_state_dict
    elif name == "rope_axes":
        from mlla_rtdetr.modeling.layers import mlla

        tables = mlla._rope_tables_uncached

        def swapped(h, w, dim, base, device, dtype):  # angles (x.theta, y.theta) instead of (y, x)
            cos2, sin2 = tables(h, w, dim, base, device, dtype)
            half = dim // 2
            return (torch.cat([cos2[:, half:], cos2[:, :half]], 1), torch.cat([sin2[:, half:], sin2[:, :half]], 1))

        mlla._rope_tables_uncached = swapped
    elif name == "loss_weight":
        from mlla_rtdetr.modeling import criterion

        init = criterion.RTDETRCriterion.__init__

        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            if "loss_giou" in self.weight_dict:
                self.weight_dict["loss_giou"] *= 1.1

        criterion.RTDETRCriterion.__init__ = __init__
    elif name == "aux_dropped":
        from mlla_rtdetr.modeling import criterion

        forward = criterion.RTDETRCriterion.forward

        def forward_without_aux0(self, *args, **kwargs):
            return {k: v for k, v in forward(self, *args, **kwargs).items() if not k.endswith("_aux_0")}

        criterion.RTDETRCriterion.forward = forward_without_aux0
    else:
        raise SystemExit(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")


def pytest_configure(config):
    name = os.environ.get(ENV_VAR)
    if name:
        _plant(name)


# ----------------------------------------------------------------------------- the driver side
def _caught_by(output: str) -> str:
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    return m.group(1).split("::", 1)[-1] if m else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutations", nargs="*", default=list(MUTATIONS), choices=list(MUTATIONS))
    parser.add_argument("--isa", choices=list(ISA), help="force these CPU kernels (default: the machine's own)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]))
    if args.isa:
        env["ATEN_CPU_CAPABILITY"], env["ONEDNN_MAX_CPU_ISA"] = ISA[args.isa]
    holes, rows = [], []
    for name in args.mutations:
        for path in MUTATIONS[name]:
            start = time.time()
            proc = subprocess.run(
                [args.python, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "-p", "parity_mutations",
                 "-m", "numerics or not numerics", path],
                cwd=REPO, env=dict(env, **{ENV_VAR: name}), capture_output=True, text=True)
            caught = proc.returncode != 0 and _caught_by(proc.stdout)
            rows.append((name, path, caught or "NOT CAUGHT", time.time() - start))
            print(f"{name:12s} {path:32s} {caught or 'NOT CAUGHT'}  ({time.time() - start:.0f} s)", flush=True)
            if not caught:
                holes.append((name, path))
    print(f"\n{len(rows) - len(holes)} of {len(rows)} (mutation, parity file) pairs caught"
          + (f"; NOT caught: {holes}" if holes else ""))
    return 1 if holes else 0


if __name__ == "__main__":
    sys.exit(main())
