"""MLLA parity against the official implementation's outputs (tests/fixtures/parity, MLLA section).

Binding checks: max |ours - official| <= 3e-5 (the strict level) on the full mlla_tiny maps and the mlla_t_cls
logits; stored summaries (outputs and intermediate activations) pass ``check_summary``.
"""
import functools

import pytest
import torch
from parity_state import check_summary, make_input, max_abs_diff

from mlla_rtdetr.modeling.layers import rope_tables
from mlla_utils import build_from_constructor, load_case, official_state
from parity_utils import TEST_THREADS

pytestmark = pytest.mark.numerics

# The fixture README's strict level: float32 rounding on AVX-512 / AVX2 / generic kernels moves these
# maps by < 1e-5, and a LayerNorm eps of 1e-6 instead of 1e-5 by 9e-5, which 1e-4 would let pass.
TOL = 3e-5


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(old)


@functools.lru_cache(maxsize=None)
def _loaded_model(case):
    manifest, expected = load_case(case)
    model = build_from_constructor(expected).eval()
    state = official_state(manifest)
    own = model.state_dict()
    assert set(state) == set(own), (sorted(set(state) ^ set(own)))[:10]
    model.load_state_dict(state, strict=True)
    return model, manifest, expected


def _record_activations(model):
    """Forward hooks producing the fixture's ``act_summaries`` names -> (B, N, C) tokens."""
    acts, handles = {}, []

    def save(name, pick):
        def hook(_m, _inp, out):
            acts[name] = pick(out)
        return hook

    handles.append(model.patch_embed.register_forward_hook(save("patch_embed", lambda o: o[0])))
    handles.append(model.layers[0].blocks[0].attn.register_forward_hook(
        save("layers.0.blocks.0.attn", lambda o: o)))
    for i, stage in enumerate(model.layers):
        for j, blk in enumerate(stage.blocks):
            handles.append(blk.register_forward_hook(save(f"layers.{i}.blocks.{j}", lambda o: o)))
        if stage.downsample is not None:
            handles.append(stage.downsample.register_forward_hook(save(f"layers.{i}.downsample", lambda o: o[0])))
        handles.append(stage.register_forward_hook(
            save(f"layers.{i}", lambda o: o[0] if o[2] is None else o[2])))
    if hasattr(model, "norm"):
        handles.append(model.norm.register_forward_hook(save("norm", lambda o: o)))
    return acts, handles


def _check_case_input(model, inp):
    x = make_input(inp["shape"], inp["seed"])
    assert check_summary(inp["input_summary"], x)[0]
    acts, handles = _record_activations(model)
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    outs = list(out.values()) if isinstance(out, dict) else [out]
    assert len(outs) == len(inp["output_summaries"])
    for i, (o, s) in enumerate(zip(outs, inp["output_summaries"])):
        ok, rep = check_summary(s, o, rtol=1e-4, atol=1e-5)
        assert ok, f"output {i}: {rep}"
    for name, s in inp["act_summaries"].items():
        assert name in acts, f"activation {name} was not recorded"
        ok, rep = check_summary(s, acts[name], rtol=1e-4, atol=1e-5)
        assert ok, f"activation {name}: {rep}"
    return outs


@pytest.mark.parametrize("input_name", ["x320x320_seed1", "x333x500_seed2"])
def test_mlla_tiny_full_maps(input_name):
    model, _, expected = _loaded_model("mlla_tiny")
    inp = expected["inputs"][input_name]
    outs = _check_case_input(model, inp)
    for i, (o, e) in enumerate(zip(outs, inp["outputs"])):
        assert o.shape == e.shape
        diff = max_abs_diff(o, e)
        assert diff <= TOL, f"map {i}: max abs diff {diff:.3g}"


def test_mlla_tiny_odd_sizes_match_official_padding():
    _, expected = load_case("mlla_tiny")
    got = [tuple(t.shape[-2:]) for t in expected["inputs"]["x333x500_seed2"]["outputs"]]
    assert got == [(84, 125), (42, 63), (21, 32), (11, 16)]


@pytest.mark.parametrize("input_name", ["x224x224_seed1", "x480x640_seed2"])
def test_mlla_t_summaries(input_name):
    model, _, expected = _loaded_model("mlla_t")
    _check_case_input(model, expected["inputs"][input_name])


def test_mlla_t_cls_logits():
    model, _, expected = _loaded_model("mlla_t_cls")
    inp = expected["inputs"]["x224x224_seed1"]
    (logits,) = _check_case_input(model, inp)
    assert logits.shape == (1, 1000)
    diff = max_abs_diff(logits, inp["outputs"][0])
    assert diff <= TOL, f"logits: max abs diff {diff:.3g}"


@pytest.mark.parametrize("case", ["mlla_tiny", "mlla_t_cls"])
def test_rope_tables_equal_official_derived_buffers(case):
    """The official `rotations` buffers, rebuilt from our cos/sin tables, pass their stored summary
    (the classification model uses them in its forward pass)."""
    manifest, _ = load_case(case)
    for key, entry in manifest["derived"].items():
        h, w, half, _ = entry["summary"]["shape"]
        cos2, sin2 = rope_tables(h, w, 2 * half)
        rotations = torch.stack([cos2[:, 0::2], sin2[:, 1::2]], dim=-1).reshape(h, w, half, 2)
        # float32 cos / sin: exact on the CPU that made the fixture, within an ulp on other kernels
        ok, rep = check_summary(entry["summary"], rotations, rtol=0, atol=2.4e-7)
        assert ok, f"{key}: {rep}"


def test_norm_eps_values():
    """The fixtures cannot catch a LayerNorm eps of 1e-6; check 1e-5 everywhere directly."""
    model, _, _ = _loaded_model("mlla_tiny")
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))]
    assert norms and all(m.eps == 1e-5 for m in norms)
    gelus = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    assert gelus and all(m.approximate == "none" for m in gelus)
