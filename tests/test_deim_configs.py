"""D-FINE / DEIM-D-FINE / DEIM-RT-DETRv2 model configs: every size has exactly the official
parameter count (``scripts/make_deim_float64_references.py --count-params`` builds each official
model from its YAML, ShihuaHuang95/DEIM @ a9aa4ad, and counts every registered parameter, D-FINE's
two fixed constants included), and the DEIM variants differ from their bases only by DEIM's
model changes. Built on the meta device (no weights are allocated)."""
import pytest
import torch
from detectron2.config import instantiate

from mlla_rtdetr.engine import load_config

OFFICIAL_PARAMS = {
    "dfine_hgnetv2_n": 3_782_693,
    "dfine_hgnetv2_s": 10_321_877,
    "dfine_hgnetv2_m": 19_590_064,
    "dfine_hgnetv2_l": 31_244_152,
    "dfine_hgnetv2_x": 62_621_560,
    "deim_dfine_hgnetv2_n": 3_782_693,
    "deim_dfine_hgnetv2_s": 10_321_877,
    "deim_dfine_hgnetv2_m": 19_590_064,
    "deim_dfine_hgnetv2_l": 31_289_848,  # trainable BatchNorm in the backbone (D-FINE-L freezes it)
    "deim_dfine_hgnetv2_x": 62_715_480,
    "deim_rtdetrv2_r18vd": 20_183_440,
    "deim_rtdetrv2_r34vd": 31_440_644,
    "deim_rtdetrv2_r50vd_m": 33_198_864,  # 3 decoder layers (RT-DETRv2-M: 6)
    "deim_rtdetrv2_r50vd": 42_943_596,
    "deim_rtdetrv2_r101vd": 76_660_716,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_equals_official(name):
    with torch.device("meta"):
        model = instantiate(load_config(f"models/{name}.py").model)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize("size", "nsmlx")
def test_deim_dfine_differs_from_dfine_by_deim_changes_only(size):
    base = load_config(f"models/dfine_hgnetv2_{size}.py").model
    deim = load_config(f"models/deim_dfine_hgnetv2_{size}.py").model
    assert (deim.decoder.activation, deim.decoder.mlp_act) == ("silu", "silu")
    assert list(deim.criterion.losses) == ["mal", "boxes", "local"] and deim.criterion.gamma == 1.5
    assert (deim.backbone.freeze_at, deim.backbone.freeze_norm) == (-1, False)
    for key in ("encoder", "matcher"):
        node = base[key] if key in base else base.criterion[key]
        other = deim[key] if key in deim else deim.criterion[key]
        assert node == other
    for key in set(base.decoder) - {"activation", "mlp_act"}:
        assert base.decoder[key] == deim.decoder[key], key


def test_official_dfine_constants_are_checked_not_loaded():
    """Official D-FINE checkpoints store ``up`` / ``reg_scale`` under decoder. and decoder.decoder.:
    equal values convert (the model keeps its own), another size's reg_scale is a clear error."""
    from mlla_rtdetr.checkpoint.rtdetr_converter import CheckpointConversionError, convert_official_rtdetr

    model = instantiate(load_config("models/dfine_hgnetv2_n.py").model)
    official = {k: v.clone() for k, v in model.state_dict().items()}
    official["decoder.decoder.up"] = official["decoder.up"].clone()
    official["decoder.decoder.reg_scale"] = official["decoder.reg_scale"].clone()
    converted, report = convert_official_rtdetr(official, target=model)
    assert report.ok and set(converted) == set(model.state_dict())
    assert sorted(report.dropped_derived) == sorted(k for k in official if k.endswith(("up", "reg_scale")))
    official["decoder.reg_scale"] = torch.tensor([8.0])  # a D-FINE-X checkpoint
    official["decoder.decoder.reg_scale"] = torch.tensor([8.0])
    with pytest.raises(CheckpointConversionError, match=r"model.decoder.reg_scale=8"):
        convert_official_rtdetr(official, target=model)
