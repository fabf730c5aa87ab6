"""The mixed-precision, CUDA and NCCL paths: AMP training steps (fp16 / bf16), AMP inference close to
float32, DDP over NCCL, ONNX export from CUDA, the benchmark on CUDA.

Tests marked ``cuda`` are skipped without a GPU (see conftest.py); the CPU variants of the AMP
tests run everywhere (CPU autocast runs the same trainer code: autocast, GradScaler, unscale
before clipping). TF32 is off for every comparison with float32 (conftest.py; the export tool
turns it off itself).
"""
import json
import subprocess
import sys

import pytest
import torch

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.engine.trainer import Trainer
from mlla_rtdetr.utils.bench_cases import random_instances
from tools_utils import MLLA_TINY_CONFIG, REPO_ROOT, TINY_CONFIG, spread_weights_

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]
CONFIGS = [pytest.param(TINY_CONFIG, id="resnet_vd"), pytest.param(MLLA_TINY_CONFIG, id="mlla")]
MAX_NORM = 0.1
SIZE = (64, 64)


def _model(config, device):
    torch.manual_seed(0)
    model = build_model(load_config(config), checkpoint="", device="cpu")
    return spread_weights_(model, seed=0).to(device)


def _train_step(config, device, amp_dtype=None):
    """One Trainer step (lr 0, so the clipped gradients stay to be inspected) with clipping at
    MAX_NORM; returns (total loss, grad norm before clipping, grad norm after, trainer)."""
    from detectron2.utils.events import EventStorage

    model = _model(config, device).train()
    batch = random_instances(2, SIZE, num_classes=5, seed=0, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    # A small initial loss scale: the default (65536) overflows on the first fp16 steps and skips them.
    scaler = torch.amp.GradScaler(device, init_scale=2.0**8, enabled=amp_dtype == "float16")
    trainer = Trainer(model, iter([batch]), opt, amp=amp_dtype is not None, amp_dtype=amp_dtype or "float16",
                      device_type=device, clip_grad=dict(max_norm=MAX_NORM), seed=0, grad_scaler=scaler)
    with EventStorage(0) as trainer.storage:
        trainer.iter = 0
        trainer.run_step()
        loss = trainer.storage.history("total_loss").latest()
        norm_before = trainer.storage.history("grad_norm").latest()
    norm_after = torch.norm(torch.stack([p.grad.float().norm() for p in model.parameters() if p.grad is not None]))
    return loss, norm_before, float(norm_after), trainer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("config", CONFIGS)
def test_amp_training_step(config, amp_dtype, device):
    if device == "cpu" and amp_dtype == "float16" and config == MLLA_TINY_CONFIG:
        pytest.skip("float16 autocast is slow on the CPU: the ResNet-vd case covers the trainer's fp16 path there")
    ref_loss, ref_norm, _, _ = _train_step(config, device)
    loss, norm_before, norm_after, trainer = _train_step(config, device, amp_dtype)
    assert torch.isfinite(torch.tensor(loss)) and torch.isfinite(torch.tensor(norm_before))
    assert trainer.grad_scaler.is_enabled() == (amp_dtype == "float16")
    if amp_dtype == "float16":
        assert trainer.grad_scaler.get_scale() == 2.0**8  # no overflow: the step was taken
    # Losses are computed in float32 outside autocast: within a few % of the float32 step.
    assert loss == pytest.approx(ref_loss, rel=0.05)
    # Gradients were unscaled before clipping: the clipped norm is MAX_NORM in true units, and the
    # norm before clipping is that of float32 training (scaled gradients would be 256x larger).
    assert ref_norm > MAX_NORM
    assert 0.5 < norm_before / ref_norm < 2.0, (norm_before, ref_norm)
    assert norm_after == pytest.approx(MAX_NORM, rel=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp_dtype,tol", [("float16", 1e-2), ("bfloat16", 6e-2)])
@pytest.mark.parametrize("config", CONFIGS)
def test_amp_inference_close_to_float32(config, amp_dtype, tol, device):
    """Encoder outputs under autocast within ``tol`` (relative to their largest value) of float32;
    the detector's outputs are finite. (Final per-query outputs are not compared: the encoder's
    top-K proposal choice may change with the precision.)"""
    if device == "cpu" and amp_dtype == "float16":
        pytest.skip("float16 autocast is slow on the CPU (bfloat16 is the CPU's lower precision)")
    model = _model(config, device).eval()
    images = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(0)).to(device)

    def encoder_outputs():
        feats = model.backbone(images)
        feats = [feats[f] for f in model.in_features] if isinstance(feats, dict) else feats
        return model.encoder(feats)

    with torch.no_grad():
        ref = encoder_outputs()
        with torch.autocast(device, dtype=getattr(torch, amp_dtype)):
            low = encoder_outputs()
            out = model.forward_raw(images)
    for a, r in zip(low, ref):
        assert a.dtype == getattr(torch, amp_dtype)
        assert float((a.float() - r).abs().max() / r.abs().max()) < tol
    assert all(torch.isfinite(v).all() for v in (out["pred_logits"], out["pred_boxes"]))


def _run(args, cwd, timeout=900):
    proc = subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_ddp_nccl_two_processes(tmp_path):
    """tools/train_net.py --num-gpus 2 on CUDA: two NCCL processes, AMP, one weight copy per rank."""
    out = tmp_path / "ddp"
    proc = _run([str(REPO_ROOT / "tools" / "train_net.py"), "--config-file", TINY_CONFIG, "--num-gpus", "2",
                 "train.device=cuda", "train.amp.enabled=True", "train.max_iter=6", "train.eval_period=0",
                 "train.checkpointer.period=0", "dataloader.train.num_workers=0",
                 "dataloader.train.mapper.image_size=[128,128]", f"train.output_dir={out}"], cwd=tmp_path)
    log = (out / "log.txt").read_text()
    assert "Training on cuda:0 with 2 process(es)" in log, proc.stderr[-2000:]
    assert (out / "model_final.pth").is_file()


@pytest.mark.cuda
def test_export_from_cuda(tmp_path):
    """The export tool traces the model on the GPU; onnxruntime (CPU) matches PyTorch on CUDA."""
    report = tmp_path / "r.json"
    _run([str(REPO_ROOT / "tools" / "export_onnx.py"), "--config-file", MLLA_TINY_CONFIG, "--checkpoint", "",
          "--device", "cuda", "--output", str(tmp_path / "m.onnx"), "--input-size", "96", "--report", str(report)],
         cwd=tmp_path)
    saved = json.loads(report.read_text())
    assert saved["passed"] and saved["device"] == "cuda"
    assert max(saved["max_abs_diff"].values()) <= 1e-4


@pytest.mark.cuda
def test_benchmark_on_cuda(tmp_path):
    """Inference FPS in fp32 and fp16 (TF32 off) at batch 1 and 8, and training images/s, with
    CUDA peak memory."""
    bench = str(REPO_ROOT / "tools" / "benchmark.py")
    out = tmp_path / "inf.json"
    _run([bench, "inference", "--config-file", TINY_CONFIG, MLLA_TINY_CONFIG, "--device", "cuda", "--tf32", "off",
          "--precision", "fp32", "fp16", "--deploy", "on", "--input-sizes", "128", "--batch-sizes", "1", "8",
          "--warmup", "2", "--iters", "3", "--output", str(out)], cwd=tmp_path)
    data = json.loads(out.read_text())
    assert data["settings"]["tf32"] == "off" and data["environment"]["cuda"]
    rows = data["rows"]
    assert {(r["config"], r["precision"], r["batch_size"]) for r in rows} == {
        (c, p, b) for c in ("rtdetr_tiny_synthetic", "mlla_rtdetr_tiny_synthetic") for p in ("fp32", "fp16")
        for b in (1, 8)}
    for r in rows:
        assert r["throughput_img_s"] > 0 and r["peak_mem_mb"] > 0
        assert r["memory_method"] == "torch.cuda.max_memory_allocated"
    out = tmp_path / "train.json"
    _run([bench, "train-step", "--config-file", TINY_CONFIG, "--device", "cuda", "--precision", "fp32", "fp16",
          "bf16", "--input-sizes", "128", "--batch-sizes", "2", "--warmup", "2", "--iters", "3", "--output",
          str(out)], cwd=tmp_path)
    rows = json.loads(out.read_text())["rows"]
    assert [r["precision"] for r in rows] == ["fp32", "fp16", "bf16"]
    assert all(r["throughput_img_s"] > 0 for r in rows)
