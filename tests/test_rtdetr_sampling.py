"""RT-DETRv2 sampling variants: per-level ``num_points`` from configs and overrides, the discrete
(nearest-pixel) sampling of the official v2 code, and the sp / dsp recipes.

The discrete path's official parity (logits / boxes, summaries, post-processing, train losses) is
the ``rtdetrv2_r18vd_dsp`` case of ``tests/test_rtdetr_parity.py``.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from omegaconf import OmegaConf

from recipe_utils import load_recipe, recipe_without
from rtdetr_model_utils import make_targets, random_feats, tiny_criterion, tiny_decoder

from mlla_rtdetr.engine import apply_overrides
from mlla_rtdetr.errors import ConfigError
from mlla_rtdetr.modeling.decoder import MSDeformableAttention, deformable_attention_core, per_level_num_points

REPO = Path(__file__).resolve().parents[1]
TINY = "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"
OFFICIAL = "https://github.com/lyuwenyu/storage/releases/download/v0.1/"


# ----------------------------------------------------------------------------- num_points
@pytest.mark.parametrize(
    "given, expected",
    [
        (4, [4, 4, 4]),
        ([1, 2, 3], [1, 2, 3]),
        ((2, 2, 2), [2, 2, 2]),
        (OmegaConf.create([3, 1, 2]), [3, 1, 2]),
    ],
)
def test_num_points_int_list_tuple_listconfig(given, expected):
    assert per_level_num_points(given, 3) == expected
    attn = MSDeformableAttention(32, 4, 3, given)
    assert attn.num_points_list == expected
    assert attn.sampling_offsets.out_features == 4 * sum(expected) * 2


@pytest.mark.parametrize("bad", [[1, 1], [1, 1, 1, 1], [], 0, [1, 0, 1], 1.5, [1, 2.0, 1], "4", True, None])
def test_num_points_invalid_is_config_error(bad):
    with pytest.raises(ConfigError, match="num_points"):
        per_level_num_points(bad, 3)


def test_num_points_wrong_length_message_names_levels():
    with pytest.raises(ConfigError) as e:
        MSDeformableAttention(32, 4, 3, OmegaConf.create([1, 1]))
    assert "2 entries" in str(e.value) and "num_levels=3" in str(e.value) and "[1, 1, 1]" in str(e.value)
    with pytest.raises(ConfigError, match="v1"):
        tiny_decoder(version="v1", num_points=OmegaConf.create([2, 3, 4]))
    v1 = tiny_decoder(version="v1", num_points=OmegaConf.create([4, 4, 4]))
    assert v1.decoder.layers[0].cross_attn.num_points_list == [4, 4, 4]
    with pytest.raises(ConfigError, match="cross_attn_method"):
        tiny_decoder(cross_attn_method="nearest")


def test_num_points_override_on_a_recipe_builds_and_trains():
    """The override that used to crash with ``int() argument must be ... not 'ListConfig'``."""
    cfg = apply_overrides(LazyConfig.load(str(REPO / TINY)), ["model.decoder.num_points=[1,2,3]"])
    model = instantiate(cfg.model)
    attn = model.decoder.decoder.layers[0].cross_attn
    assert attn.num_points_list == [1, 2, 3]
    assert torch.allclose(attn.num_points_scale, torch.tensor([1.0, 0.5, 0.5, 1 / 3, 1 / 3, 1 / 3]))
    dec = model.decoder.train()
    out = dec(random_feats(hidden_dim=64, size=64), make_targets(num_classes=5))
    losses = tiny_criterion(5)(out, make_targets(num_classes=5))
    sum(losses.values()).backward()
    assert attn.sampling_offsets.weight.grad is not None and attn.sampling_offsets.weight.grad.abs().sum() > 0


def test_num_points_bad_override_exits_2_with_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", TINY, "model.decoder.num_points=[1,1]",
         f"train.output_dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "num_points [1, 1] has 2 entries" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- discrete sampling
def _core_inputs(shapes, points, heads=2, head_dim=3, bs=2, lq=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(bs, sum(h * w for h, w in shapes), heads, head_dim, generator=g)
    loc = torch.rand(bs, lq, heads, sum(points), 2, generator=g) * 1.4 - 0.2  # some outside [0, 1]
    attw = torch.softmax(torch.randn(bs, lq, heads, sum(points), generator=g), -1)
    return value, loc, attw


def test_discrete_matches_naive_nearest_pixel_on_rectangular_maps():
    shapes, points = [(4, 6), (3, 2)], [2, 3]
    value, loc, attw = _core_inputs(shapes, points)
    out = deformable_attention_core(value, shapes, loc, attw, points, method="discrete")
    bs, lq, heads, _, _ = loc.shape
    hd = value.shape[-1]
    starts = [0, shapes[0][0] * shapes[0][1]]
    expected = torch.zeros(bs, lq, heads * hd, dtype=torch.float64)
    for b in range(bs):
        for q in range(lq):
            for m in range(heads):
                p = 0
                for lvl, (h, w) in enumerate(shapes):
                    for _ in range(points[lvl]):
                        x, y = loc[b, q, m, p].tolist()
                        # int() truncates toward zero like the official int64 cast
                        col = min(max(int(x * w + 0.5), 0), w - 1)
                        row = min(max(int(y * h + 0.5), 0), h - 1)
                        v = value[b, starts[lvl] + row * w + col, m].double()
                        expected[b, q, m * hd : (m + 1) * hd] += attw[b, q, m, p].double() * v
                        p += 1
    assert torch.allclose(out.double(), expected, atol=1e-6)


def test_discrete_reads_pixel_k_at_k_over_w_half_a_pixel_from_bilinear():
    """Official convention: pixel k sits at x = k / W for the discrete method but at (k + 0.5) / W
    for ``grid_sample(align_corners=False)``; the dsp checkpoints were trained with this shift."""
    shapes, points = [(5, 5), (3, 4)], [3, 2]
    value, _, attw = _core_inputs(shapes, points, seed=1)
    g = torch.Generator().manual_seed(2)
    corners, centres = [], []
    for (h, w), n in zip(shapes, points):
        cols = torch.randint(0, w, (2, 5, 2, n), generator=g)
        rows = torch.randint(0, h, (2, 5, 2, n), generator=g)
        corners.append(torch.stack([cols / w, rows / h], -1))
        centres.append(torch.stack([(cols + 0.5) / w, (rows + 0.5) / h], -1))
    discrete = deformable_attention_core(value, shapes, torch.cat(corners, 3), attw, points, method="discrete")
    bilinear = deformable_attention_core(value, shapes, torch.cat(centres, 3), attw, points, method="default")
    assert torch.allclose(discrete, bilinear, atol=1e-6)


def test_discrete_offsets_frozen_and_get_no_gradient():
    dec = tiny_decoder(cross_attn_method="discrete").train()
    attn = dec.decoder.layers[0].cross_attn
    assert not attn.sampling_offsets.weight.requires_grad and not attn.sampling_offsets.bias.requires_grad
    out = dec(random_feats(), make_targets())
    losses = tiny_criterion()(out, make_targets())
    sum(losses.values()).backward()
    assert attn.sampling_offsets.weight.grad is None
    assert attn.attention_weights.weight.grad.abs().sum() > 0 and attn.value_proj.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- recipes
SP_RECIPES = {f"rtdetrv2_r18vd_sp{n}_120e_coco.py": n for n in (1, 2, 3)}
# recipe: (base recipe, epochs, stop-aug epoch, official checkpoint the YAML fine-tunes)
DSP_RECIPES = {
    "rtdetrv2_r18vd_dsp_3x_coco.py": ("rtdetrv2_r18vd_120e_coco.py", 36, 33, "rtdetrv2_r18vd_120e_coco.pth"),
    "rtdetrv2_r34vd_dsp_1x_coco.py": ("rtdetrv2_r34vd_120e_coco.py", 12, 10, "rtdetrv2_r34vd_120e_coco_ema.pth"),
    "rtdetrv2_r50vd_m_dsp_3x_coco.py": ("rtdetrv2_r50vd_m_7x_coco.py", 36, 33, "rtdetrv2_r50vd_m_7x_coco_ema.pth"),
    "rtdetrv2_r50vd_dsp_1x_coco.py": ("rtdetrv2_r50vd_6x_coco.py", 12, 10, "rtdetrv2_r50vd_6x_coco_ema.pth"),
}


@pytest.mark.parametrize("name", sorted(SP_RECIPES))
def test_sp_recipes_differ_from_base_only_in_points(name):
    n = SP_RECIPES[name]
    cfg, base = load_recipe(name), load_recipe("rtdetrv2_r18vd_120e_coco.py")
    assert list(cfg.model.decoder.num_points) == [n] * 3
    assert cfg.train.output_dir.endswith(name[:-3])
    # everything else is the base recipe (epochs 120, stop 117, groups, warm-up, EMA, no init checkpoint)
    assert recipe_without(cfg, "model.decoder.num_points", "train.output_dir") == recipe_without(
        base, "model.decoder.num_points", "train.output_dir"
    )
    model = instantiate(cfg.model)
    per_layer_delta = 3 * 8 * (4 - n) * 3 * 257  # sampling_offsets (2 per point) + attention_weights rows
    n_base = 20_184_464  # official rtdetrv2_r18vd (4 points per level)
    assert sum(p.numel() for p in model.parameters()) == n_base - 3 * per_layer_delta


@pytest.mark.parametrize("name", sorted(DSP_RECIPES))
def test_dsp_recipes_fine_tune_the_official_checkpoint(name):
    base_name, epochs, stop, ckpt = DSP_RECIPES[name]
    cfg, base = load_recipe(name), load_recipe(base_name)
    assert cfg.model.decoder.cross_attn_method == "discrete" and base.model.decoder.cross_attn_method == "default"
    assert cfg.train.epochs == epochs and cfg.dataloader.train.stop_aug_epoch == stop
    assert cfg.train.init_checkpoint == OFFICIAL + ckpt
    changed = ("model.decoder.cross_attn_method", "train.epochs", "dataloader.train.stop_aug_epoch",
               "train.init_checkpoint", "train.output_dir")
    assert recipe_without(cfg, *changed) == recipe_without(base, *changed)


def test_dsp_recipe_starts_from_an_official_checkpoint(tmp_path, parity_dir, monkeypatch):
    """``train.init_checkpoint`` (a URL in the recipe) is downloaded once into the cache,
    recognised as an official v2 checkpoint (EMA weights preferred, as official tuning) and
    converted into the discrete-sampling model."""
    from parity_state import load_manifest, make_state

    from mlla_rtdetr.checkpoint import sources

    from mlla_rtdetr.engine import ModelEMA, load_init_checkpoint

    state = make_state(load_manifest(parity_dir / "fixtures" / "rtdetrv2_r18vd.manifest.json"), seed=0)
    raw = {k: torch.zeros_like(v) for k, v in state.items()}
    local = tmp_path / "rtdetrv2_r18vd_120e_coco.pth"
    torch.save({"model": raw, "ema": {"module": state, "updates": 1000}}, local)  # official layout
    fetched = []
    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "urlopen", lambda url, **kw: fetched.append(url) or open(local, "rb"))

    cfg = load_recipe("rtdetrv2_r18vd_dsp_3x_coco.py")
    model = instantiate(cfg.model)
    ema = ModelEMA(model, cfg.train.model_ema.decay, cfg.train.model_ema.warmups)
    report = load_init_checkpoint(model, cfg.train.init_checkpoint, ema)
    assert fetched == [cfg.train.init_checkpoint]
    assert report["format"] == "official RT-DETR" and report["ema"] == "reset from the loaded model"
    w = "decoder.decoder.layers.0.cross_attn.value_proj.weight"
    assert torch.equal(model.state_dict()[w], state[w]) and ema.updates == 0
    assert model.decoder.decoder.layers[0].cross_attn.method == "discrete"


def test_unreachable_checkpoint_url_is_a_clear_error(tmp_path, monkeypatch):
    from mlla_rtdetr.checkpoint import sources
    from mlla_rtdetr.engine import load_init_checkpoint
    from mlla_rtdetr.errors import CheckpointError

    def offline(url, **kw):
        raise OSError("Network is unreachable")

    monkeypatch.setenv("MLLA_RTDETR_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "urlopen", offline)
    cfg = load_recipe("rtdetrv2_r18vd_dsp_3x_coco.py")
    with pytest.raises(CheckpointError) as e:
        load_init_checkpoint(torch.nn.Linear(1, 1), cfg.train.init_checkpoint)
    assert "Network is unreachable" in str(e.value)
    assert f"put it at\n  {tmp_path / 'checkpoints' / 'rtdetrv2_r18vd_120e_coco.pth'}\n" in str(e.value)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_net_with_per_level_points_and_discrete_sampling(tmp_path):
    """A recipe trained and evaluated by tools/train_net.py with both variants set by overrides."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", TINY,
         "model.decoder.num_points=[1,2,3]", "model.decoder.cross_attn_method=discrete",
         "dataloader.train.num_workers=0", "dataloader.train.stop_aug_epoch=0",
         "dataloader.train.mapper.image_size=[128,128]", "dataloader.test.mapper.image_size=[128,128]",
         "model.encoder.eval_spatial_size=[128,128]", "model.decoder.eval_spatial_size=[128,128]",
         "train.max_iter=6", "train.eval_period=0", "train.checkpointer.period=0", f"train.output_dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = LazyConfig.load(str(out / "config.yaml"))
    assert list(saved.model.decoder.num_points) == [1, 2, 3] and saved.model.decoder.cross_attn_method == "discrete"
    weights = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert weights["decoder.decoder.layers.0.cross_attn.sampling_offsets.weight"].shape == (4 * 6 * 2, 64)
    assert (out / "eval_results.json").exists()


@pytest.mark.slow
def test_discrete_sampling_exports_to_onnx_without_grid_sample(tmp_path):
    """What the dsp recipes are for: a graph without GridSample (dynamic batch, checked in onnxruntime)."""
    import onnx

    path = tmp_path / "dsp.onnx"
    proc = subprocess.run(
        [sys.executable, "tools/export_onnx.py", "--config-file", TINY, "--checkpoint", "", "--output", str(path),
         "--input-size", "128", "--", "model.decoder.cross_attn_method=discrete",
         "model.encoder.eval_spatial_size=[128,128]", "model.decoder.eval_spatial_size=[128,128]"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert '"passed": true' in proc.stdout
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops and "Gather" in ops
