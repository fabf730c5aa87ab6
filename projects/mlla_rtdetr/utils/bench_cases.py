"""Benchmark cases.

A case is described by a JSON-serializable dict (``spec``) so that the same case can be rebuilt in
a fresh process for CPU peak-memory measurements (:mod:`.memprobe`). :func:`build_case` turns a
spec into a :class:`Case`: a callable without arguments doing one unit of work, the device, and
the number of images / tokens one call processes.

Kinds:

* ``inference``  ``model.forward_raw(images)`` of a config's model under ``torch.inference_mode``;
  options ``deploy`` (RepVGG folding), ``channels_last`` (None: the model's own layout),
  ``compile`` (``torch.compile``),
  ``precision`` (``fp32``, or autocast to ``fp16`` / ``bf16``) and ``runtime``: ``torch``, or
  ``onnxruntime`` (the model exported to ONNX as ``tools/export_onnx.py`` does, run by an
  onnxruntime CPU session).
* ``train_step`` one optimizer step: forward with random targets (autocast at ``precision``), loss
  sum, backward (scaled for fp16), AdamW step.
* ``encoder_blocks`` the intra-scale blocks of the hybrid encoder alone (the attention part), on
  the projected maps of an ``input_size`` image: ``attention`` and ``use_encoder_idx`` override
  the config's; ``channels_last`` feeds the maps in channels-last memory (as ``deploy()``-ed
  models do).
* ``encoder`` the whole hybrid encoder (input projections, intra-scale blocks, CCFF) on backbone-
  shaped random maps.
* ``attention``  one attention layer over ``tokens`` tokens of width ``dim``: ``mlla`` (MLLA linear
  attention with LePE and RoPE) or ``softmax`` (qkv projection, scaled-dot-product attention,
  output projection).

``inference`` and ``train_step`` build our model from ``config_file`` (+ ``overrides``), or the
official RT-DETR model of ``official_config`` from the user's checkout ``official_root``
(:mod:`.official`), with the same options.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from mlla_rtdetr.engine import build_model, load_config, resolve_device

SPEC_KINDS = ("inference", "train_step", "encoder_blocks", "encoder", "attention")


@dataclasses.dataclass
class Case:
    fn: Callable[[], Any]
    device: str
    images_per_call: int
    info: Dict[str, Any]


def _device(spec: Dict[str, Any]) -> str:
    return str(resolve_device(spec.get("device", "cpu")))


def _seeded_rand(*shape, seed: int = 0, device="cpu") -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


def _load(spec):
    return load_config(spec["config_file"], spec.get("overrides", ()))


def build_case(spec: Dict[str, Any]) -> Case:
    """Build the case described by ``spec`` (see the module docstring for the kinds)."""
    kind = spec.get("kind")
    if kind not in SPEC_KINDS:
        raise ValueError(f"Unknown case kind {kind!r}; expected one of {SPEC_KINDS}.")
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    if "tf32" in spec:  # CUDA only: TF32 matmuls / convolutions (off = exact fp32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(spec["tf32"])
    torch.manual_seed(int(spec.get("seed", 0)))
    return _BUILDERS[kind](spec)


# ------------------------------------------------------------------------------------------------
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
RUNTIMES = ("torch", "onnxruntime")


def _detector(spec, device: str, train: bool = False) -> nn.Module:
    """Our model of ``spec["config_file"]``, or the official model of ``spec["official_config"]``
    (from the checkout ``spec["official_root"]``, with its criterion when ``train``), on ``device``."""
    if spec.get("official_config"):
        from .official import build_official

        model = build_official(spec.get("official_root", ""), spec["official_config"],
                               _hw(spec["input_size"]), with_criterion=train)
        return model.to(device)
    return build_model(_load(spec), checkpoint=spec.get("checkpoint", ""), device=device)


def detector_gflops(spec: Dict[str, Any]) -> Dict[str, float]:
    """GFLOPs per image of the detector of ``spec`` (ours or official) at ``spec["input_size"]``,
    counted as ``tools/analyze_model.py`` does: ``gflops`` (fvcore on ``forward_raw`` in eval mode,
    2 x MACs) and ``official_gflops`` (the official RT-DETR convention,
    :func:`~mlla_rtdetr.utils.flops.official_gflops`, from the same trace)."""
    from .flops import model_flops, official_gflops

    model = _detector(spec, "cpu").eval()
    hw = _hw(spec["input_size"])
    report = model_flops(model, *hw)
    return {"gflops": report.gflops, "official_gflops": official_gflops(model, *hw, report=report)}


def _autocast(spec, device: str):
    """``torch.autocast`` for ``spec["precision"]`` (fp32: a disabled one)."""
    precision = spec.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _inference(spec) -> Case:
    runtime = spec.get("runtime", "torch")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    device = "cpu" if runtime == "onnxruntime" else _device(spec)
    model = _detector(spec, device).eval()
    if spec.get("deploy"):
        if not hasattr(model, "deploy"):
            raise AttributeError(f"{type(model).__name__} has no deploy(); cannot benchmark deploy=True.")
        model.deploy()
    b, size = int(spec["batch_size"]), _hw(spec["input_size"])
    images = _seeded_rand(b, 3, *size, device=device)
    params = sum(p.numel() for p in model.parameters())
    if runtime == "onnxruntime":
        return _onnxruntime_case(spec, model, images, params)
    model, images = _memory_format(spec, model, images)
    forward = model.forward_raw
    if spec.get("compile"):
        forward = torch.compile(forward)

    def fn():
        with torch.inference_mode(), _autocast(spec, device):
            return forward(images)

    return Case(fn, device, b, {"params": params})


def _memory_format(spec, model: nn.Module, images: torch.Tensor):
    """Apply ``spec["channels_last"]`` to the model and its input: None leaves the model's own
    layout (ours: channels-last on CPU, NCHW on GPU; official: NCHW), True / False force
    channels-last / NCHW weights and input."""
    setting = spec.get("channels_last")
    if setting is None:
        return model, images
    fmt = torch.channels_last if setting else torch.contiguous_format
    if hasattr(model, "channels_last"):  # ours: forward_raw converts the images itself
        model.channels_last = bool(setting)
    return model.to(memory_format=fmt), images.contiguous(memory_format=fmt)


def _onnxruntime_case(spec, model: nn.Module, images: torch.Tensor, params: int) -> Case:
    """``forward_raw`` exported to ONNX (dynamic batch, as ``tools/export_onnx.py``), run by an
    onnxruntime CPU session with ``spec["threads"]`` intra-op threads."""
    import os
    import tempfile

    from .onnx_utils import RawExport, export, onnxruntime_session

    if spec.get("channels_last") or spec.get("compile") or spec.get("precision", "fp32") != "fp32":
        raise ValueError("runtime=onnxruntime takes the exported fp32 graph: no channels_last, compile or autocast.")
    wrapper = RawExport(model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export(wrapper, (images[:2] if images.shape[0] > 1 else images.repeat(2, 1, 1, 1),),
                      os.path.join(tmp, "model.onnx"), wrapper.input_names, wrapper.output_names)
        session = onnxruntime_session(path, threads=spec.get("threads"))  # holds the model in memory
    feeds = {wrapper.input_names[0]: images.numpy()}

    def fn():
        return session.run(None, feeds)

    return Case(fn, "cpu", images.shape[0], {"params": params})


def random_instances(batch_size: int, size, num_classes: int, boxes_per_image: int = 6, seed: int = 0,
                     device: str = "cpu") -> List[Dict[str, Any]]:
    """A training batch in the model contract format: random images (uint8-valued float) with
    ``boxes_per_image`` random boxes (XYXY absolute) and classes."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(batch_size):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8).float().to(device)
        cxcy = torch.rand(boxes_per_image, 2, generator=g) * torch.tensor([w, h]) * 0.8 + torch.tensor([w, h]) * 0.1
        wh = (torch.rand(boxes_per_image, 2, generator=g) * 0.3 + 0.05) * torch.tensor([w, h])
        boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes.to(device))
        inst.gt_classes = torch.randint(0, num_classes, (boxes_per_image,), generator=g).to(device)
        batch.append({"image": image, "instances": inst, "height": h, "width": w})
    return batch


def _train_step(spec) -> Case:
    """One optimizer step as our ``Trainer`` runs it, without gradient clipping: forward (autocast
    at ``spec["precision"]``), loss sum, zero_grad, (scaled) backward, AdamW step."""
    device = _device(spec)
    model = _detector(spec, device, train=True)
    if spec.get("deploy"):  # trains the folded RepVGG convs directly (deploy() leaves eval mode on)
        model.deploy()
    model.train()
    b, size = int(spec["batch_size"]), _hw(spec["input_size"])
    num_classes = int(getattr(model, "num_classes", 80))
    batch = random_instances(b, size, num_classes, device=device)
    model, _ = _memory_format(spec, model, batch[0]["image"][None])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=spec.get("precision") == "fp16")

    def fn():
        with _autocast(spec, device):
            losses = model(batch)
        loss = sum(v.float() for v in losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    return Case(fn, device, b, {"params": sum(p.numel() for p in model.parameters())})


def _hw(size) -> List[int]:
    if isinstance(size, int):
        return [size, size]
    return [int(size[0]), int(size[1])]


def encoder_config(cfg, attention: Optional[str], use_encoder_idx: Optional[List[int]],
                   input_size) -> Any:
    """A copy of ``cfg.model.encoder`` with the intra-scale ``attention`` and ``use_encoder_idx``
    replaced and the eval size set to ``input_size``. The config's ``attention_cfg`` is kept only
    when its attention type is kept (it holds that block's options)."""
    enc = copy.deepcopy(cfg.model.encoder)
    if use_encoder_idx is not None:
        enc.use_encoder_idx = list(use_encoder_idx)
    if attention is not None:
        own = enc.get("attention", "softmax")
        if own != attention:
            enc.attention_cfg = None
        enc.attention = attention
    elif not isinstance(enc.get("attention", "softmax"), str) and len(enc.attention) != len(enc.use_encoder_idx):
        raise ValueError(
            f"The config's per-level attention {list(enc.attention)} does not fit use_encoder_idx "
            f"{list(enc.use_encoder_idx)}; pass an attention name."
        )
    enc.eval_spatial_size = list(_hw(input_size))
    return enc


def _encoder_feats(encoder, b, size, device, projected: bool) -> List[torch.Tensor]:
    h, w = size
    feats = []
    for i, (c, s) in enumerate(zip(encoder.in_channels, encoder.feat_strides)):
        ch = encoder.hidden_dim if projected else c
        feats.append(_seeded_rand(b, ch, math.ceil(h / s), math.ceil(w / s), seed=i, device=device))
    return feats


def _encoder(spec, blocks_only: bool) -> Case:
    from detectron2.config import instantiate

    device = _device(spec)
    cfg = _load(spec)
    size = _hw(spec["input_size"])
    enc_cfg = encoder_config(cfg, spec.get("attention"), spec.get("use_encoder_idx"), size)
    encoder = instantiate(enc_cfg).to(device)
    encoder.train(bool(spec.get("train", False)))
    b = int(spec.get("batch_size", 1))
    feats = _encoder_feats(encoder, b, size, device, projected=blocks_only)
    if spec.get("channels_last"):  # the layout of deploy()-ed models
        feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    tokens = sum(feats[i].shape[-2] * feats[i].shape[-1] for i in encoder.use_encoder_idx)
    grad = bool(spec.get("train", False))

    if blocks_only:
        pairs = [(blk, feats[i]) for blk, i in zip(encoder.encoder, encoder.use_encoder_idx)]

        def run():
            return [blk(x) for blk, x in pairs]
    else:
        def run():
            return encoder(feats)

    def fn():
        if grad:
            out = run()
            sum(o.float().mean() for o in out).backward()
            return out
        with torch.inference_mode():
            return run()

    params = sum(p.numel() for p in (encoder.encoder if blocks_only else encoder).parameters())
    return Case(fn, device, b, {"tokens": tokens, "params": params, "attention": list(encoder.attention)})


# ------------------------------------------------------------------------------------------------
class SoftmaxAttention(nn.Module):
    """Plain multi-head softmax self-attention: qkv projection, ``F.scaled_dot_product_attention``,
    output projection. Tokens (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MLLAAttention(nn.Module):
    """The MLLA backbone's linear attention (qk projection, elu+1 kernels, RoPE, LePE) over a fixed
    (H, W) map. Tokens (B, H*W, C) -> (B, H*W, C)."""

    def __init__(self, dim: int, num_heads: int, hw):
        super().__init__()
        from mlla_rtdetr.modeling.layers import LinearAttention

        self.hw = tuple(int(v) for v in hw)
        self.attn = LinearAttention(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, self.hw)


def build_attention_module(kind: str, dim: int, num_heads: int, hw) -> nn.Module:
    """``softmax`` -> :class:`SoftmaxAttention`; ``mlla`` -> :class:`MLLAAttention` at resolution ``hw``."""
    if kind == "softmax":
        return SoftmaxAttention(dim, num_heads)
    if kind == "mlla":
        return MLLAAttention(dim, num_heads, hw)
    raise ValueError(f"attention kind must be 'softmax' or 'mlla', got {kind!r}")


def _attention(spec) -> Case:
    device = _device(spec)
    tokens = int(spec["tokens"])
    side = int(round(math.sqrt(tokens)))
    if side * side != tokens:
        raise ValueError(f"tokens must be a square number (a HxW map), got {tokens}")
    dim, heads, b = int(spec.get("dim", 256)), int(spec.get("num_heads", 8)), int(spec.get("batch_size", 1))
    module = build_attention_module(spec["attention"], dim, heads, (side, side)).to(device).eval()
    x = _seeded_rand(b, tokens, dim, device=device)

    def fn():
        with torch.inference_mode():
            return module(x)

    return Case(fn, device, b, {"tokens": tokens, "params": sum(p.numel() for p in module.parameters())})


_BUILDERS = {
    "inference": _inference,
    "train_step": _train_step,
    "encoder_blocks": lambda s: _encoder(s, blocks_only=True),
    "encoder": lambda s: _encoder(s, blocks_only=False),
    "attention": _attention,
}
