"""What the runtime depends on is explicit and checked: the CPU kernels are a config field (not the
thread count), each private oneDNN op is probed and replaced by the public op when missing or
changed, the detectron2 version is checked at import, AMP's dtype follows the device, an explicit
GPU index with several processes is an error, and SyncBN conversion keeps the parameters."""
import logging
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from mlla_rtdetr.engine import Detectron2VersionError, build_model, check_detectron2, load_config, resolve_amp_dtype
from mlla_rtdetr.engine.device import device_for_process
from mlla_rtdetr.errors import ConfigError
from mlla_rtdetr.modeling.layers import SyncBatchNorm2d, convert_sync_batch_norm, fused

TINY = "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"


@pytest.fixture
def fresh_probes():
    fused._probed.cache_clear()
    previous = fused._KERNELS
    yield
    fused._probed.cache_clear()
    fused._KERNELS = previous


@pytest.mark.parametrize("broken", ["missing", "changed"])
def test_private_onednn_op_missing_or_changed_falls_back_to_the_public_op(monkeypatch, caplog, fresh_probes, broken):
    real = fused._private_op

    def fake(name):
        if name == "_linear_pointwise" and broken == "missing":
            raise AttributeError(f"'_OpNamespace' 'mkldnn' object has no attribute '{name}'")
        packet = real(name)
        if name == "_linear_pointwise":  # a release where the op computes something else
            return types.SimpleNamespace(default=lambda x, w, b, *a: F.linear(x, w, b) * 2, binary=packet.binary)
        return packet

    monkeypatch.setattr(fused, "_private_op", fake)
    layer = nn.Linear(8, 6).eval()
    x = torch.randn(3, 8)
    with caplog.at_level(logging.WARNING, logger=fused.__name__), torch.no_grad():
        assert not fused.onednn_enabled(layer, x)
        for _ in range(3):
            torch.testing.assert_close(fused.linear(layer, x, nn.ReLU()), F.relu(F.linear(x, layer.weight, layer.bias)))
    warnings = [r.message for r in caplog.records if "_linear_pointwise" in r.message]
    assert len(warnings) == 1 and "the public PyTorch op runs instead" in warnings[0], warnings  # probed once
    # the convolution op is probed on its own and still used
    conv = nn.Conv2d(4, 6, 3, padding=1).eval()
    with torch.no_grad():
        assert fused.onednn_enabled(conv, torch.randn(1, 4, 8, 8))


def test_cpu_kernels_are_a_config_field_not_the_thread_count(fresh_probes):
    layer = nn.Linear(256, 256)
    x = torch.randn(4096, 256, requires_grad=True)  # 2**28 multiply-adds: a oneDNN training layer
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert fused.set_cpu_kernels("onednn") == "onednn" and fused._train_on_onednn(x, layer.weight)
            assert fused.set_cpu_kernels("reference") == "reference" and not fused._train_on_onednn(x, layer.weight)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ConfigError, match="train.cpu_kernels must be one of"):
        fused.set_cpu_kernels("fast")
    cfg = load_config(TINY, ["train.cpu_kernels=reference"])
    build_model(cfg)
    assert fused.cpu_kernels() == "reference" and cfg.train.cpu_kernels == "reference"
    cfg = load_config(TINY, [])
    build_model(cfg)
    assert cfg.train.cpu_kernels == "onednn"  # "auto" resolved, as config.yaml records it


def test_detectron2_outside_the_range_is_a_clear_error():
    check_detectron2()  # the installed one
    for version in ("0.5", "0.8.1", "not-a-version"):
        fake = types.SimpleNamespace(__version__=version, __file__="/somewhere/detectron2/__init__.py")
        with pytest.raises(Detectron2VersionError, match=rf"detectron2 {version} \(/somewhere/detectron2/.*"
                                                         r"outside the versions .*>=0.6,<0.8.*sal-detectron2==0.7.2"):
            check_detectron2(fake)


def test_amp_dtype_follows_the_device():
    assert resolve_amp_dtype("auto", "cpu") == "bfloat16"
    assert resolve_amp_dtype("auto", "cuda") == "float16"
    assert resolve_amp_dtype("float16", "cpu") == "float16"
    with pytest.raises(ConfigError, match="train.amp.dtype"):
        resolve_amp_dtype("fp8", "cuda")
    assert load_config(TINY, []).train.amp.dtype == "auto"


def test_explicit_gpu_index_with_several_processes_is_an_error(monkeypatch):
    from detectron2.utils import comm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(comm, "get_world_size", lambda: 1)
    assert device_for_process("cuda:1") == torch.device("cuda", 1)  # one process: as given
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "get_local_rank", lambda: 1)
    assert device_for_process("cuda") == torch.device("cuda", 1)  # the local rank's GPU
    with pytest.raises(ConfigError, match=r"train.device='cuda:1' names one GPU.*2 processes.*"
                                          r"train.device=cuda.*CUDA_VISIBLE_DEVICES"):
        device_for_process("cuda:1")


def test_sync_bn_conversion_keeps_parameters_buffers_and_frozen_norms():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), FrozenBatchNorm2d(4),
                          nn.Sequential(nn.BatchNorm2d(4, momentum=None)))
    model[1].running_mean.fill_(0.5)
    weight, running_mean = model[1].weight, model[1].running_mean
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert convert_sync_batch_norm(model, "cpu") is model
    assert type(model[1]) is SyncBatchNorm2d and type(model[3][0]) is SyncBatchNorm2d
    assert type(model[2]) is FrozenBatchNorm2d
    assert model[1].weight is weight and model[1].running_mean is running_mean and model[3][0].momentum is None
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # without a process group it is BatchNorm2d
    x = torch.randn(2, 4, 5, 5)
    bn = nn.BatchNorm2d(4)
    torch.testing.assert_close(model[1](x), bn(x))
    assert type(convert_sync_batch_norm(nn.Sequential(nn.BatchNorm2d(4)), "cuda")[0]) is nn.SyncBatchNorm
