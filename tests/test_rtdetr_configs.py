"""RT-DETR model configs and recipes: published sizes (params, GFLOPs), official hyperparameters,
deploy() and the tiny CPU recipe.

GFLOPs convention (reproduces the official models' counts to 0.1 G):
:func:`mlla_rtdetr.utils.flops.official_gflops`: fvcore ``FlopCountAnalysis`` of
``model.forward_raw`` in eval mode on one 640x640 image, with the encoder box head applied to
all 8400 tokens as in the official code, NOT re-parameterized (RepVGG branches as trained), counting
only convolutions and linear / matrix-multiply ops (fvcore counts one multiply-add each), times 2.
Normalization, upsampling, grid_sample (deformable attention sampling) and the attention products
inside ``scaled_dot_product_attention`` are not counted.
"""
import pytest
import torch
from detectron2.config import instantiate

from mlla_rtdetr.engine import load_config
from mlla_rtdetr.utils.flops import MATMUL_OPERATORS, model_flops, official_gflops

# size -> (exact parameter count, published M params, published GFLOPs at 640)
PUBLISHED = {
    "r18vd": (20_184_464, 20.18, 61.0),
    "r34vd": (31_441_668, 31.44, 93.1),
    "r50vd_m": (36_593_772, 36.59, 100.2),
    "r50vd": (42_891_372, 42.89, 137.1),
    "r101vd": (76_556_268, 76.56, 259.8),
    # HGNetv2 L / X / H: official counts (the RT-DETR paper lists Paddle's 110 / 234 for L / X)
    "hgnetv2_l": (32_925_036, 32.93, 111.0),
    "hgnetv2_x": (67_374_188, 67.37, 235.2),
    "hgnetv2_h": (125_584_348, 125.58, 491.3),
}

V1_RECIPES = {f"rtdetr_{s}_6x_coco.py": s for s in PUBLISHED if s != "hgnetv2_h"}  # no v1 RT-DETR-H
V2_RECIPES = {
    "rtdetrv2_r18vd_120e_coco.py": ("r18vd", 120, 117),
    "rtdetrv2_r34vd_120e_coco.py": ("r34vd", 120, 117),
    "rtdetrv2_r50vd_m_7x_coco.py": ("r50vd_m", 84, 81),
    "rtdetrv2_r50vd_6x_coco.py": ("r50vd", 72, 71),
    "rtdetrv2_r101vd_6x_coco.py": ("r101vd", 72, 71),
    "rtdetrv2_hgnetv2_l_6x_coco.py": ("hgnetv2_l", 72, 71),
    "rtdetrv2_hgnetv2_x_6x_coco.py": ("hgnetv2_x", 72, 71),
    "rtdetrv2_hgnetv2_h_6x_coco.py": ("hgnetv2_h", 72, 71),
}


def _load(name):
    return load_config(name)


def count_gflops(model, size=(640, 640)):
    """GFLOPs of the convolutions and matrix products our ``forward_raw`` executes."""
    report = model_flops(model, *size)
    return 2 * sum(v for k, v in report.by_operator.items() if k in MATMUL_OPERATORS) / 1e9


@pytest.mark.parametrize("size", sorted(PUBLISHED))
def test_parameter_counts_equal_published(size):
    exact, published_m, _ = PUBLISHED[size]
    model = instantiate(_load(f"models/rtdetr_{size}.py").model)
    n = sum(p.numel() for p in model.parameters())
    assert n == exact
    assert round(n / 1e6, 2) == published_m


@pytest.mark.parametrize(
    "size",
    ["r18vd", "hgnetv2_l"]
    + [pytest.param(s, marks=pytest.mark.slow) for s in ("r34vd", "r50vd_m", "r50vd", "r101vd", "hgnetv2_x", "hgnetv2_h")],
)
def test_gflops_at_640_equal_published(size):
    model = instantiate(_load(f"models/rtdetr_{size}.py").model)
    report = model_flops(model, 640, 640)
    # The official decoders (v1 and v2) run the encoder box head (MLP 256-256-256-4) on all 8400
    # memory tokens; ours runs it on the 300 selected ones only (identical outputs, fewer ops).
    # official_gflops counts the official way.
    head = model.decoder.enc_bbox_head
    per_token = sum(layer.in_features * layer.out_features for layer in head.layers)
    assert report.by_submodule["decoder.enc_bbox_head"] == 300 * per_token
    assert round(official_gflops(model, report=report), 1) == PUBLISHED[size][2]


@pytest.mark.numerics
def test_deploy_same_outputs_fewer_ops(parity_dir):
    # Official-fixture weights. The fused kernels round differently (and differently on each CPU), so
    # near-tied queries may swap places: rows are compared aligned by anchor, and a selection may
    # differ only at anchors within the measured rounding of the boundary (tests/parity_utils.py).
    from mlla_rtdetr.checkpoint.rtdetr_converter import load_official_rtdetr
    from parity_state import load_manifest, make_input, make_state
    from parity_utils import assert_same_detections, recorded_selection

    model = instantiate(_load("models/rtdetr_r18vd.py").model).eval()
    rows = load_manifest(parity_dir / "fixtures" / "rtdetrv2_r18vd.manifest.json")
    load_official_rtdetr(model, make_state(rows, 0))
    model.channels_last = False  # the reference: NCHW as the official code
    x = make_input((1, 3, 640, 640), 1)

    def run(inject):
        with torch.no_grad(), recorded_selection(model.decoder, inject) as selection:
            return model.forward_raw(x), selection

    reference = run(None)
    before = count_gflops(model)
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    with torch.no_grad():
        model.deploy()
    after = count_gflops(model)
    info = assert_same_detections(lambda inject: reference, run, atol=1e-4, k=model.decoder.num_queries)
    print(f"deploy: {info}")
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == n_conv - 12
    # the folded 1x1 branches: 3 RepVGG blocks of width 128 per CSP layer at 40x40, 80x80, 40x40, 20x20
    assert before - after == pytest.approx(2 * 128 * 128 * 3 * (1600 + 6400 + 1600 + 400) / 1e9, rel=1e-9)


def _groups(cfg, model):
    cfg.optimizer.params.model = model
    groups = instantiate(cfg.optimizer.params)
    by_name = {}
    for g in groups:
        for n in g["names"]:
            by_name[n] = (g["lr"], g["weight_decay"])
    return by_name


def test_v1_recipes_official_hyperparameters():
    for name, size in V1_RECIPES.items():
        cfg = _load(name)
        assert cfg.model.decoder.version == "v1"
        assert cfg.train.epochs == 72 and cfg.dataloader.train.total_batch_size == 16
        assert cfg.dataloader.train.stop_aug_epoch is None and cfg.dataloader.train.multiscale_sizes is not None
        assert cfg.lr_multiplier.warmup == 0
        assert cfg.train.clip_grad.enabled and cfg.train.clip_grad.max_norm == 0.1
        assert cfg.train.model_ema.enabled and cfg.train.model_ema.decay == 0.9999 and cfg.train.model_ema.warmups == 2000
        assert cfg.optimizer.lr == 1e-4 and cfg.optimizer.weight_decay == 1e-4
        assert cfg.train.output_dir.endswith(name[:-3])

    cfg = _load("rtdetr_r18vd_6x_coco.py")
    g = _groups(cfg, instantiate(cfg.model))
    assert g["backbone.res_layers.0.blocks.0.branch2a.conv.weight"] == pytest.approx((1e-5, 1e-4))
    assert g["backbone.res_layers.0.blocks.0.branch2a.norm.weight"] == pytest.approx((1e-5, 0.0))
    assert g["encoder.fpn_blocks.0.conv1.norm.bias"] == pytest.approx((1e-4, 0.0))
    assert g["decoder.dec_score_head.0.bias"] == pytest.approx((1e-4, 0.0))
    assert g["decoder.dec_score_head.0.weight"] == pytest.approx((1e-4, 1e-4))
    # official v1 calls these modules ".1": its "norm" patterns miss them, so they keep weight decay
    assert g["encoder.input_proj.0.norm.weight"] == pytest.approx((1e-4, 1e-4))
    assert g["decoder.enc_output.norm.weight"] == pytest.approx((1e-4, 1e-4))


def test_v2_recipes_official_hyperparameters():
    for name, (size, epochs, stop) in V2_RECIPES.items():
        cfg = _load(name)
        assert cfg.model.decoder.version == "v2"
        assert cfg.train.epochs == epochs and cfg.dataloader.train.stop_aug_epoch == stop
        assert cfg.dataloader.train.total_batch_size == 16
        assert (cfg.dataloader.train.multiscale_sizes is None) == (size == "r18vd")
        assert cfg.lr_multiplier.warmup == 2000 and cfg.lr_multiplier.warmup_unit == "iter"
        assert cfg.train.amp.enabled and cfg.train.clip_grad.max_norm == 0.1
        assert cfg.train.model_ema.enabled and cfg.train.model_ema.warmups == 2000

    r18 = _load("rtdetrv2_r18vd_120e_coco.py")
    g = _groups(r18, instantiate(r18.model))
    assert g["backbone.res_layers.0.blocks.0.branch2a.conv.weight"] == pytest.approx((1e-4, 1e-4))
    assert g["backbone.res_layers.0.blocks.0.branch2a.norm.weight"] == pytest.approx((1e-4, 0.0))
    assert g["decoder.dec_score_head.0.bias"] == pytest.approx((1e-4, 1e-4))

    r50 = _load("rtdetrv2_r50vd_6x_coco.py")
    model = instantiate(r50.model)
    g = _groups(r50, model)
    assert g["backbone.res_layers.0.blocks.0.branch2a.conv.weight"] == pytest.approx((1e-5, 1e-4))
    assert not any(n.startswith("backbone.conv1.") for n in g)  # frozen stem (freeze_at=0)
    assert g["encoder.input_proj.0.norm.weight"] == pytest.approx((1e-4, 0.0))
    assert g["encoder.input_proj.0.conv.weight"] == pytest.approx((1e-4, 1e-4))

    r34 = _load("rtdetrv2_r34vd_120e_coco.py")
    g = _groups(r34, instantiate(r34.model))
    assert g["backbone.res_layers.0.blocks.0.branch2a.conv.weight"] == pytest.approx((5e-5, 1e-4))
    assert g["backbone.res_layers.0.blocks.0.branch2a.norm.weight"] == pytest.approx((5e-5, 0.0))
    assert g["encoder.fpn_blocks.0.conv1.conv.weight"] == pytest.approx((1e-4, 1e-4))


def test_model_config_architectures():
    expect = {  # size: (depth, frozen norm, expansion, encoder width, decoder layers, eval_idx)
        "r18vd": (18, False, 0.5, 256, 3, -1),
        "r34vd": (34, False, 0.5, 256, 4, -1),
        "r50vd_m": (50, True, 0.5, 256, 6, 2),
        "r50vd": (50, True, 1.0, 256, 6, -1),
        "r101vd": (101, True, 1.0, 384, 6, -1),
    }
    for size, (depth, frozen, expansion, width, layers, eval_idx) in expect.items():
        m = _load(f"models/rtdetr_{size}.py").model
        assert (m.backbone.depth, m.backbone.freeze_norm, m.encoder.expansion, m.encoder.hidden_dim,
                m.decoder.num_layers, m.decoder.eval_idx) == (depth, frozen, expansion, width, layers, eval_idx)
        assert m.decoder.hidden_dim == 256 and list(m.decoder.feat_channels) == [width] * 3


def test_tiny_recipe_builds_and_trains_a_step():
    cfg = _load("rtdetr_tiny_synthetic.py")
    assert cfg.dataloader.train.dataset.names == "synthetic_shapes_train"
    assert cfg.train.max_iter and cfg.train.max_iter <= 500
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    from detectron2.structures import Boxes, Instances

    inst = Instances((256, 256))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 100.0, 120.0]]))
    inst.gt_classes = torch.tensor([3])
    batch = [{"image": torch.randint(0, 255, (3, 256, 256), dtype=torch.uint8), "instances": inst,
              "height": 256, "width": 256}] * 2
    model.train()
    losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(batch[:1])
    assert len(out[0]["instances"]) == cfg.model.num_top_queries
