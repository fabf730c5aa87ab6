"""The fast paths: oneDNN kernels (layers.fused) in inference and training, BatchNorm folding,
channels-last deploy() and CPU training, dense gradients of concatenated maps, the MLLA block's
fused form. Each is checked against the plain PyTorch reference (within 1e-4 or tighter), and the
entry points (deploy, evaluation, tools' build_model, the training forward) are checked to take
the fast path. Speed itself is measured by tools/benchmark.py, not here."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from mlla_rtdetr.config import config_path
from mlla_rtdetr.engine.evaluation import inference_copy
from mlla_rtdetr.modeling.layers import (
    ConvNormAct,
    Linear,
    MLLABlock,
    conv2d,
    dense_grad,
    downsample_in_row_bands,
    fold_conv_norms,
    init_mlla_weights,
    linear,
    map_to_tokens,
    onednn_enabled,
    onednn_kernels,
    tokens_to_map,
)
from mlla_rtdetr.modeling.layers.mlla import elu_plus_one
from mlla_rtdetr.engine import build_model, load_config
from parity_utils import TEST_THREADS, assert_same_detections, recorded_selection

pytestmark = pytest.mark.numerics

# The oneDNN training path is a 1x1 convolution; on one thread PyTorch itself dispatches it to its
# native kernel instead of oneDNN's, so either op shows that the layer left the matmul path.
CONV_OPS = {"aten::mkldnn_convolution", "aten::_convolution"}
ACTS = [None, nn.ReLU(), nn.GELU(), nn.SiLU(), nn.Hardsigmoid()]  # the last one is applied unfused


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("with_residual", [False, True])
def test_fused_linear_equals_plain(act, with_residual):
    torch.manual_seed(0)
    layer = Linear(24, 40).eval()
    x = torch.randn(2, 50, 24)
    residual = torch.randn(2, 50, 40) if with_residual else None
    with torch.no_grad():
        assert onednn_enabled(layer, x, residual)
        got = linear(layer, x, act, residual)
        with onednn_kernels(False):
            assert not onednn_enabled(layer, x, residual)
            ref = linear(layer, x, act, residual)
    expected = F.linear(x, layer.weight, layer.bias) + (residual if with_residual else 0)
    expected = act(expected) if act is not None else expected
    torch.testing.assert_close(ref, expected, rtol=0, atol=0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("groups,stride", [(1, 1), (1, 2), (16, 1)])
def test_fused_conv_equals_plain(act, with_residual, groups, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, stride, padding=1, groups=groups).eval()
    x = torch.randn(2, 16, 20, 20).contiguous(memory_format=torch.channels_last)
    residual = torch.randn(2, 16, 20 // stride, 20 // stride) if with_residual else None
    with torch.no_grad():
        got = conv2d(conv, x, act, residual)
        expected = conv(x) + (residual if with_residual else 0)
        expected = act(expected) if act is not None else expected
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("kernel,layout", [(3, torch.channels_last), (5, torch.channels_last),
                                           (3, torch.contiguous_format)])
def test_depthwise_conv_plus_its_input_is_one_kernel(act, kernel, layout):
    """x + dwconv(x) (MLLA's CPE) folds the residual into the centre taps: one conv, no add pass."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, kernel, padding=kernel // 2, groups=16).eval().to(memory_format=layout)
    x = torch.randn(2, 16, 20, 20).contiguous(memory_format=layout)
    weight = conv.weight.clone()
    with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
        got = conv2d(conv, x, act, residual=x)
    map_adds = [e for e in prof.key_averages(group_by_input_shape=True)
                if e.key in ("aten::add", "aten::add_") and list(x.shape) in e.input_shapes]
    assert not map_adds and "mkldnn::_convolution_pointwise" in {e.key for e in prof.key_averages()}
    assert torch.equal(conv.weight, weight)  # the layer itself is untouched
    with torch.no_grad():
        expected = conv(x) + x
        expected = act(expected) if act is not None else expected
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # strided or dilated depthwise convs and other residuals keep the binary path
    for other in (nn.Conv2d(16, 16, 3, 2, padding=1, groups=16), nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16)):
        with torch.no_grad():
            residual = torch.randn_like(other(x))
            torch.testing.assert_close(conv2d(other.eval(), x, residual=residual), other(x) + residual,
                                       rtol=1e-5, atol=1e-5)


def test_onednn_dispatch_rules():
    layer = Linear(8, 8)
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert not onednn_enabled(layer, x)  # training mode: not the inference kernels
        layer.eval()
        assert onednn_enabled(layer, x)
        assert not onednn_enabled(layer, x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn_enabled(layer, x)
    assert not onednn_enabled(layer, x)  # gradients flow to the weights: the training path instead
    traced = []
    layer.forward = lambda t: traced.append(onednn_enabled(layer, t)) or F.linear(t, layer.weight, layer.bias)
    with torch.no_grad():
        torch.jit.trace(layer, x, check_trace=False)
    assert traced == [False]


def test_elu_plus_one_value_and_gradient():
    x = torch.cat([torch.randn(1000, dtype=torch.float64) * 4, torch.zeros(3, dtype=torch.float64)])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    (F.elu(a) + 1).sum().backward()
    got = elu_plus_one(b)
    got.sum().backward()
    torch.testing.assert_close(got, F.elu(x) + 1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-12)
    inplace = x.clone()
    assert elu_plus_one(inplace, inplace=True).data_ptr() == inplace.data_ptr()
    torch.testing.assert_close(inplace, F.elu(x) + 1, rtol=1e-12, atol=1e-12)


def test_tokens_to_map_is_a_true_channels_last_view_for_batch_one():
    x = torch.randn(1, 12 * 10, 8)
    m = tokens_to_map(x, (12, 10))
    assert m.data_ptr() == x.data_ptr() and m.shape == (1, 8, 12, 10)
    assert m.stride() == (12 * 10 * 8, 1, 10 * 8, 8)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    with torch.no_grad():
        assert conv(m).is_contiguous(memory_format=torch.channels_last)  # no NCHW fallback
    assert torch.equal(map_to_tokens(m), x)


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_fold_conv_norms(norm):
    torch.manual_seed(0)
    block = nn.Sequential(ConvNormAct(6, 12, 3, 2, norm=norm, act="silu"), ConvNormAct(12, 12, 1, bias=True, norm=norm))
    for m in block.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 6, 16, 16)
    block.eval()
    with torch.no_grad():
        ref = block(x)
        assert fold_conv_norms(block) == 2
        got = block(x)
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in block.modules())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="eval mode"):
        fold_conv_norms(ConvNormAct(3, 4, 3).train())


@pytest.mark.parametrize("hw", [(8, 8), (5, 7)])
def test_mlla_block_fused_inference_equals_reference(hw):
    torch.manual_seed(0)
    block = MLLABlock(32, 2, drop_path=0.1)
    block.apply(init_mlla_weights)
    for p in block.parameters():  # non-trivial biases / LayerNorm affines
        p.data.add_(0.02 * torch.randn_like(p))
    block.eval()
    x = torch.randn(2, hw[0] * hw[1], 32)
    with torch.no_grad():
        got = block(x, hw)
        with onednn_kernels(False):
            ref = block(x, hw)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # training (drop path off) runs the plain PyTorch ops whatever the switch: bit-identical gradients
    block.train()
    block.drop_path = nn.Identity()
    grads = []
    for enabled in (True, False):
        with onednn_kernels(enabled):
            xi = x.clone().requires_grad_()
            out = block(xi, hw)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([xi.grad] + [p.grad.clone() for p in block.parameters()])
        block.zero_grad()
    for g, r in zip(*grads):
        torch.testing.assert_close(g, r, rtol=0, atol=0)


def _encoder_maps(model, x):
    images = x.contiguous(memory_format=torch.channels_last) if model.uses_channels_last(x.device) else x
    feats = model.backbone(images)
    return model.encoder([feats[f] for f in model.in_features])


@pytest.mark.parametrize("recipe", ["rtdetr_tiny_synthetic.py", "mlla_rtdetr_tiny_synthetic.py"])
def test_deploy_is_the_fast_form_with_the_same_outputs(recipe):
    cfg = load_config(str(config_path(recipe)))
    torch.manual_seed(0)
    model = build_model(cfg, checkpoint="").eval()
    for m in model.modules():  # trained-like BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad(), onednn_kernels(False):
        ref_maps = _encoder_maps(model, x)
    deployed = copy.deepcopy(model).deploy()
    assert not deployed.training and deployed.channels_last
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in deployed.modules())
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in deployed.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    with torch.no_grad():
        maps = _encoder_maps(deployed, x)
    for a, b in zip(maps, ref_maps):
        assert a.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

    def run(m, inject):  # near-tied queries may swap places: rows are compared aligned by anchor
        with torch.no_grad(), recorded_selection(m.decoder, inject) as selection:
            return m.forward_raw(x), selection

    def run_reference(inject):
        with onednn_kernels(False):
            return run(model, inject)

    assert_same_detections(run_reference, lambda inject: run(deployed, inject), atol=1e-4,
                           k=model.decoder.num_queries)


def test_inference_entry_points_use_the_deployed_model():
    cfg = load_config(str(config_path("rtdetr_tiny_synthetic.py")))
    model = build_model(cfg, checkpoint="").train()
    copy_ = inference_copy(model)
    assert copy_ is not model and model.training and model.channels_last is None  # the original is untouched
    assert copy_.channels_last and not copy_.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy_.modules())
    tool_model = build_model(cfg, checkpoint="", deploy=True)  # tools/predict.py and tools/run_demo.py
    assert tool_model.channels_last and not any(isinstance(m, nn.BatchNorm2d) for m in tool_model.modules())


def _ops(fn):
    with torch.profiler.profile() as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("act", [None, nn.GELU()], ids=["plain", "gelu"])
@pytest.mark.parametrize("shape", [(2, 1000, 64), (2000, 64), (3, 4, 200, 64)])
def test_linear_training_runs_onednn_with_the_same_values_and_gradients(act, shape):
    """Layers of >= 2**24 multiply-adds (here 2000-2400 rows x 64 x 160) train through oneDNN."""
    torch.manual_seed(0)
    layer = Linear(64, 160).train()
    x = torch.randn(*shape, requires_grad=True)
    residual = torch.randn(*shape[:-1], 160)
    grad_out = torch.randn(*shape[:-1], 160)

    def step(fast):
        layer.zero_grad(set_to_none=True)
        x.grad = None
        with onednn_kernels(fast):
            y = linear(layer, x, act, residual)
            y.backward(grad_out)
        return y.detach(), x.grad, layer.weight.grad, layer.bias.grad

    ops = _ops(lambda: step(True))
    assert ops & CONV_OPS and not ops & {"aten::mm", "aten::addmm"}, ops
    assert not ({"aten::mkldnn_convolution", "aten::convolution"} & _ops(lambda: step(False)))
    for got, ref in zip(step(True), step(False)):  # float32 sums over up to 2400 rows: other order
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_small_or_single_thread_training_layers_keep_pytorch_linear():
    layer = Linear(64, 64).train()
    small = torch.randn(100, 64, requires_grad=True)  # 409,600 multiply-adds
    assert "aten::mkldnn_convolution" not in _ops(lambda: linear(layer, small).sum().backward())
    big = torch.randn(5000, 64, requires_grad=True)
    torch.set_num_threads(1)
    assert "aten::mkldnn_convolution" not in _ops(lambda: linear(layer, big).sum().backward())
    torch.set_num_threads(2)
    assert "aten::mkldnn_convolution" in _ops(lambda: linear(layer, big).sum().backward())


def test_linear_training_on_a_strided_input_and_frozen_weights():
    torch.manual_seed(0)
    layer = Linear(128, 128)
    layer.weight.requires_grad_(False)
    x = torch.randn(1100, 128, requires_grad=True)
    xt = x.t().contiguous().t()  # same values, column-major storage
    assert _ops(lambda: layer(xt)) & CONV_OPS
    y = layer(xt)
    y.sum().backward()
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, layer.weight.sum(0).expand(1100, 128), rtol=1e-4, atol=1e-4)
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_dense_grad_makes_the_gradient_of_a_concatenated_channels_last_map_dense():
    torch.manual_seed(0)
    a, b = (torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
            for _ in range(2))
    grad_out = torch.randn(2, 16, 5, 6).contiguous(memory_format=torch.channels_last)
    seen = []
    for wrap in (lambda t: t, dense_grad):
        a.grad = None
        x = wrap(a)
        if x is not a:
            x.register_hook(seen.append)  # the gradient that reaches the wrapper: a strided slice
        a.register_hook(seen.append)
        torch.cat([x, b], dim=1).backward(grad_out)
        torch.testing.assert_close(a.grad, grad_out[:, :8], rtol=0, atol=0)
    plain_grad, slice_grad, dense = seen[0], seen[1], seen[2]
    assert not plain_grad.is_contiguous(memory_format=torch.channels_last)
    assert not slice_grad.is_contiguous(memory_format=torch.channels_last)
    assert dense.is_contiguous(memory_format=torch.channels_last)
    nchw = torch.randn(2, 8, 5, 6, requires_grad=True)
    assert dense_grad(nchw) is nchw  # the NCHW backward keeps the official rounding: untouched
    with torch.no_grad():
        assert dense_grad(a) is a


def test_channels_last_is_the_cpu_default_for_training_and_inference():
    cfg = load_config(str(config_path("rtdetr_tiny_synthetic.py")))
    model = build_model(cfg, checkpoint="").train()
    assert model.channels_last is None
    assert model.uses_channels_last("cpu") and not model.uses_channels_last("cuda")
    layouts = []
    model.backbone.register_forward_pre_hook(
        lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    batch = [{"image": torch.randint(0, 255, (3, 64, 64)).float(), "height": 64, "width": 64,
              "instances": _instances(64)} for _ in range(2)]
    torch.manual_seed(0)
    fast = model(batch)
    model.channels_last = False
    torch.manual_seed(0)
    with onednn_kernels(False):
        reference = model(batch)
    assert layouts == [True, False]
    for k in reference:
        torch.testing.assert_close(fast[k], reference[k], rtol=1e-3, atol=1e-4)
    model.channels_last = True
    assert model.uses_channels_last("cuda")


def _instances(size):
    from detectron2.structures import Boxes, Instances

    inst = Instances((size, size))
    inst.gt_boxes = Boxes(torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]]))
    inst.gt_classes = torch.tensor([0, 2])
    return inst


def _patch_merging_like_chain(c_in=8, hidden=32, c_out=16):
    """1x1 conv + ReLU, depthwise 3x3/2 + ReLU, 1x1 conv + BN: MLLA's PatchMerging shape of chain."""
    pre = ConvNormAct(c_in, hidden, 1, bias=True, norm=None, act="relu")
    down = ConvNormAct(hidden, hidden, 3, 2, groups=hidden, bias=True, norm=None, act="relu")
    post = ConvNormAct(hidden, c_out, 1, bias=True)
    for m in (pre, down, post):
        for p in m.parameters():
            p.data.normal_(0, 0.3)
    post.norm.running_mean.uniform_(-0.5, 0.5)
    post.norm.running_var.uniform_(0.5, 2)
    return pre.eval(), down.eval(), post.eval()


def _count_calls(module):
    calls = []
    module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[2]))
    return calls


@pytest.mark.parametrize("batch,height,width", [(1, 20, 20), (2, 14, 9), (1, 6, 33)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_downsample_in_row_bands_equals_the_whole_map(batch, height, width, layout):
    torch.manual_seed(0)
    pre, down, post = _patch_merging_like_chain()
    x = torch.randn(batch, 8, height, width).contiguous(memory_format=layout)
    widest_row_bytes = batch * 2 * width * 32 * 4  # pre's output: 2 input rows per output row
    with torch.inference_mode():
        whole = post(down(pre(x)))
        calls = _count_calls(down)
        for rows in (1, 2, 3):
            calls.clear()
            got = downsample_in_row_bands(x, down, pre, post, band_bytes=rows * widest_row_bytes)
            torch.testing.assert_close(got, whole, rtol=0, atol=1e-6)  # kernels for tiny bands may round differently
            expected_bands = -(-(height // 2) // rows)
            assert len(calls) == expected_bands  # it really ran in bands
            assert sum(calls) == height + 2 * (expected_bands - 1)  # one extra row above each later band
        # a stem-like chain: no pre, the 3x3/2 conv's output is the widest map
        calls.clear()
        got = downsample_in_row_bands(pre(x), down, post=post, band_bytes=1)
        torch.testing.assert_close(got, whole, rtol=0, atol=1e-6)
        assert len(calls) == height // 2


def test_downsample_in_row_bands_runs_the_whole_map_where_bands_do_not_apply():
    torch.manual_seed(0)
    pre, down, post = _patch_merging_like_chain()
    x = torch.randn(1, 8, 12, 12)
    calls = _count_calls(down)
    with torch.inference_mode():
        downsample_in_row_bands(x, down, pre, post)  # fits the default band: one call
        downsample_in_row_bands(torch.randn(1, 8, 11, 12), down, pre, post, band_bytes=1)  # odd height
        with onednn_kernels(False):
            downsample_in_row_bands(x, down, pre, post, band_bytes=1)
    assert calls == [12, 11, 12]  # the input rows of each (single) call
    calls.clear()
    for m in (pre, down, post):  # training: one whole-map pass with autograd
        m.train()
    y = downsample_in_row_bands(x.requires_grad_(), down, pre, post, band_bytes=1)
    y.sum().backward()
    assert calls == [12] and x.grad is not None
    with pytest.raises(ValueError, match="3x3 / stride 2"):
        downsample_in_row_bands(x, pre, band_bytes=1)


def test_mlla_backbone_downsamples_in_bands_with_the_same_features(monkeypatch):
    from mlla_rtdetr.modeling.backbone.mlla import MLLABackbone
    from mlla_rtdetr.modeling.layers import conv as conv_module

    torch.manual_seed(0)
    backbone = MLLABackbone(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                            out_features=("res2", "res3", "res4", "res5")).eval()
    for m in backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    fold_conv_norms(backbone)
    downs = [backbone.patch_embed.conv3[0]] + [layer.downsample.conv[1] for layer in backbone.layers
                                               if layer.downsample is not None]
    calls = [_count_calls(d) for d in downs]
    x = torch.rand(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = backbone(x)
        assert [len(c) for c in calls] == [1, 1, 1, 1]
        monkeypatch.setattr(conv_module, "ROW_BAND_BYTES", 1)  # one output row per band
        banded = backbone(x)
    assert [len(c) for c in calls] == [1 + 16, 1 + 8, 1 + 4, 1 + 2]
    for name in whole:
        torch.testing.assert_close(banded[name], whole[name], rtol=1e-5, atol=1e-5)
