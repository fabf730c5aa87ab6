"""Helpers shared by the MLLA tests: fixture loading, tiny models and where a detector has MLLA."""
import json
from pathlib import Path

import torch

from mlla_rtdetr.modeling.backbone.mlla import MLLABackbone, MLLAClassifier
from mlla_rtdetr.modeling.backbone.mlla_stages import MLLAMapStage
from mlla_rtdetr.modeling.encoder.mlla_intra_scale import MLLAIntraScale

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


def mlla_places(model) -> set:
    """Where a detector has MLLA: "backbone" (the MLLA backbone), "intra:<level>", "fusion:<fpn|pan>_blocks.<k>",
    "stage:<res>" (hybrid) and "after:<res>" (attention-only layers)."""
    places = set()
    stage_names = dict(zip(getattr(model.backbone, "stage_paths", ()), getattr(model.backbone, "stage_names", ())))
    for name, m in model.named_modules():
        parts = name.split(".")
        if isinstance(m, MLLABackbone):
            places.add("backbone")
        elif isinstance(m, MLLAIntraScale) and parts[1] == "encoder":
            places.add(f"intra:{model.encoder.use_encoder_idx[int(parts[2])]}")
        elif isinstance(m, MLLAIntraScale):
            places.add(f"fusion:{parts[1]}.{parts[2]}")
        elif isinstance(m, MLLAMapStage) and parts[1] == "after_stage":
            places.add(f"after:{parts[2]}")
        elif isinstance(m, MLLAMapStage):
            places.add(f"stage:{stage_names[name.split('.', 1)[1]]}")
    return places


def expected_places(placement: str) -> set:
    """The places (:func:`mlla_places`) of a placement-study label, e.g. "hybrid+intra_s5"."""
    parts = placement.split("+")
    expected = {"intra:2"} if "intra_s5" in parts else {"intra:1", "intra:2"} if "intra_s4s5" in parts else set()
    if "fusion" in parts:
        expected |= {f"fusion:{p}_blocks.{k}" for p in ("fpn", "pan") for k in (0, 1)}
    if "hybrid" in parts:
        expected |= {"stage:res4", "stage:res5"}
    if "attention" in parts:
        expected |= {"after:res4", "after:res5"}
    if "backbone" in parts:
        expected.add("backbone")
    return expected
