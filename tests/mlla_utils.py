"""Helpers shared by the MLLA tests: fixture loading and tiny models."""
import json
from pathlib import Path

import torch

from mlla_rtdetr.modeling.backbone.mlla import MLLABackbone, MLLAClassifier

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parity" / "fixtures"
ALL_STAGES = ("res2", "res3", "res4", "res5")


def load_case(case: str):
    """(manifest dict, expected dict) of a parity case."""
    with open(FIXTURES / f"{case}.manifest.json") as f:
        manifest = json.load(f)
    expected = torch.load(FIXTURES / f"{case}.expected.pt", weights_only=True)
    return manifest, expected


def official_state(manifest) -> "dict[str, torch.Tensor]":
    """The deterministic official state dict of a case (derived RoPE tables omitted)."""
    from parity_state import make_state

    return make_state(manifest["rows"], seed=manifest["state_seed"])


def build_from_constructor(expected) -> torch.nn.Module:
    """Our model (all four outputs for the detection backbone) for a case's official constructor."""
    c = expected["constructor"]
    kwargs = dict(embed_dim=c["embed_dim"], depths=c["depths"], num_heads=c["num_heads"],
                  drop_path_rate=c["drop_path_rate"])
    if expected["model"] == "det":
        return MLLABackbone(out_features=ALL_STAGES, **kwargs)
    return MLLAClassifier(num_classes=c["num_classes"], **kwargs)


def tiny_backbone(**overrides) -> MLLABackbone:
    """A small MLLA backbone (the mlla_tiny fixture's architecture) for fast tests."""
    kwargs = dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0,
                  out_features=ALL_STAGES)
    kwargs.update(overrides)
    return MLLABackbone(**kwargs)
