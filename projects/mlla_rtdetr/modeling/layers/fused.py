"""Linear and convolution on CPU through oneDNN, with fused activation / residual for inference.

PyTorch runs ``F.linear`` on CPU through MKL's sgemm, which on some CPUs (e.g. AMD EPYC) is more
than twice as slow as oneDNN, while every convolution already runs on oneDNN. On a float32 CPU
tensor, outside tracing, scripting, ``torch.compile`` and ONNX export, :func:`linear` therefore
uses oneDNN:

* when no gradient is needed (inference), its fused kernels (the ones Inductor uses on CPU), which
  apply the activation, and optionally a residual, inside the kernel instead of in extra passes
  over the output; :func:`conv2d` does the same for convolutions;
* in training, for layers of at least 2**24 multiply-adds, a 1x1 convolution over the rows of the
  input (a channels-last view, no copy), whose forward and backward both run on oneDNN: a training
  step of RT-DETRv2-R18 at 640 is ~10% faster (with one thread PyTorch runs this convolution on
  its own kernel, ~15% slower than ``F.linear`` on those layers).

Otherwise (GPU, half precision, autocast, tracing, export, ``torch.compile``) they run the plain
PyTorch ops. All paths give the same result up to float rounding (~1e-6 relative).

Which kernels run is the process's :func:`set_cpu_kernels` choice (``train.cpu_kernels``, set by
``build_model``; :func:`onednn_kernels` for a block), never the thread count. The private oneDNN
ops are probed once each (:func:`_probed`); a missing or changed one is replaced by the public op.

The activations fused are ReLU, exact GELU and SiLU; any other is applied afterwards. A depthwise
conv plus its own input (MLLA's CPE) is one conv with the identity added to its centre taps.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

__all__ = ["CPU_KERNELS", "Linear", "linear", "conv2d", "onednn_enabled", "onednn_kernels", "set_cpu_kernels",
           "cpu_kernels"]

logger = logging.getLogger(__name__)

CPU_KERNELS = ("auto", "onednn", "reference")
"""``train.cpu_kernels``: "onednn" (this module's oneDNN paths), "reference" (PyTorch's ops, as the
official code runs), "auto" (oneDNN where this PyTorch build has working kernels, else reference)."""


def _private_op(name: str):
    """``torch.ops.mkldnn.<name>`` (a private op: may be missing or change in a PyTorch release)."""
    return getattr(torch.ops.mkldnn, name)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@functools.lru_cache(maxsize=None)
def _probed(name: str) -> Optional[Tuple[Callable, Callable]]:
    """(default, binary) overloads of the private oneDNN op ``name`` if they exist and still compute
    what the public op does on a small input (probed once per process), else None (with a warning)."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        packet = _private_op(name)
        default, binary = packet.default, packet.binary
        g = torch.Generator().manual_seed(0)
        if name == "_linear_pointwise":
            x, r = torch.randn(4, 8, generator=g), torch.randn(4, 6, generator=g)
            w, b = torch.randn(6, 8, generator=g), torch.randn(6, generator=g)
            ok = _close(default(x, w, b, "relu", [], ""), F.relu(F.linear(x, w, b))) \
                and _close(binary(x, r, w, b, "add"), F.linear(x, w, b) + r)
        else:
            x, w = torch.randn(1, 4, 5, 5, generator=g), torch.randn(6, 4, 3, 3, generator=g)
            b, r = torch.randn(6, generator=g), torch.randn(1, 6, 5, 5, generator=g)
            geometry = ([1, 1], [1, 1], [1, 1], 1)
            ok = _close(default(x, w, b, *geometry, "relu", [], ""), F.relu(F.conv2d(x, w, b, 1, 1))) \
                and _close(binary(x, r, w, b, *geometry, "add", None, None, [], None), F.conv2d(x, w, b, 1, 1) + r)
    except Exception as e:  # missing, renamed, or a changed signature
        logger.warning(f"torch.ops.mkldnn.{name} is not usable in torch {torch.__version__} ({type(e).__name__}: "
                       f"{e}); the public PyTorch op runs instead.")
        return None
    if not ok:
        logger.warning(f"torch.ops.mkldnn.{name} in torch {torch.__version__} does not compute what the public op "
                       "does; the public PyTorch op runs instead.")
        return None
    return default, binary


_KERNELS = "auto"


def set_cpu_kernels(kernels: str) -> str:
    """Choose the CPU kernels of this module for the process (``train.cpu_kernels``, applied by
    ``build_model``); returns the resolved choice, "onednn" or "reference". "onednn" without a
    usable oneDNN build is a :class:`ConfigError`."""
    global _KERNELS
    if kernels not in CPU_KERNELS:
        raise ConfigError(f"train.cpu_kernels must be one of {list(CPU_KERNELS)}, got {kernels!r}.")
    usable = torch.backends.mkldnn.is_available()
    if kernels == "onednn" and not usable:
        raise ConfigError("train.cpu_kernels=onednn but this PyTorch build has no oneDNN (mkldnn); use "
                          "train.cpu_kernels=auto or reference.")
    _KERNELS = "onednn" if kernels in ("auto", "onednn") and usable else "reference"
    return _KERNELS


def cpu_kernels() -> str:
    """The CPU kernels in use: "onednn" or "reference"."""
    return "onednn" if _KERNELS in ("auto", "onednn") and torch.backends.mkldnn.is_available() else "reference"


@contextlib.contextmanager
def onednn_kernels(enabled: bool = True) -> Iterator[None]:
    """Within the block, use (``True``) or do not use (``False``) the oneDNN kernels of this module."""
    global _KERNELS
    previous = _KERNELS
    set_cpu_kernels("onednn" if enabled else "reference")
    try:
        yield
    finally:
        _KERNELS = previous


def _onednn_attr(act: Optional[nn.Module]):
    """oneDNN post-op (name, algorithm) of an activation module, or None if it is not fusable."""
    if act is None or isinstance(act, nn.Identity):
        return "none", ""
    if isinstance(act, nn.ReLU):
        return "relu", ""
    if isinstance(act, nn.SiLU):
        return "swish", ""
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return "gelu", "none"
    return None


def _onednn_eligible(x: torch.Tensor) -> bool:
    if _KERNELS == "reference" or torch.jit.is_tracing() or torch.jit.is_scripting() \
            or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return False
    return x.numel() > 0


def _needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def onednn_enabled(layer: nn.Module, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> bool:
    """True when :func:`linear` / :func:`conv2d` use the fused inference kernels for ``layer`` on ``x``."""
    if layer.training or not _onednn_eligible(x):
        return False
    if _probed("_convolution_pointwise" if isinstance(layer, nn.Conv2d) else "_linear_pointwise") is None:
        return False
    if residual is not None and (residual.device != x.device or residual.dtype != x.dtype):
        return False
    return not _needs_grad(x, residual, *layer.parameters())


def _finish(y: torch.Tensor, act: Optional[nn.Module], residual: Optional[torch.Tensor]) -> torch.Tensor:
    if residual is not None:
        y = y + residual
    return y if act is None else act(y)


# Below ~2**24 multiply-adds a training linear layer is as fast or faster through MKL (measured on
# AMD EPYC, 2 threads: 0.5x the time at 2**28, 1.0x at 2**23); PyTorch itself runs a 1x1
# convolution of one image on its native kernel, not oneDNN, on a single thread.
_MIN_TRAINING_MACS = 1 << 24


def _train_on_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return x.dim() >= 2 and _onednn_eligible(x) \
        and x.numel() * weight.shape[0] >= _MIN_TRAINING_MACS


def _linear_as_conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear`` computed by oneDNN's 1x1 convolution, with autograd: the rows of ``x`` are
    the pixels of a channels-last (1, C_in, 1, N) map, a view, so nothing is copied.

    x: (..., C_in) -> (..., C_out).
    """
    rows = x.reshape(1, 1, -1, x.shape[-1]).permute(0, 3, 1, 2)
    y = F.conv2d(rows, weight[:, :, None, None], bias)  # (1, C_out, 1, N), channels-last
    return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def linear(layer: nn.Linear, x: torch.Tensor, act: Optional[nn.Module] = None,
           residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``act(layer(x) + residual)`` (``residual`` and ``act`` optional).

    x: (..., C_in), residual: (..., C_out) -> (..., C_out).
    """
    if not onednn_enabled(layer, x, residual):
        if _train_on_onednn(x, layer.weight):  # training on CPU: oneDNN forward and backward
            return _finish(_linear_as_conv1x1(x, layer.weight, layer.bias), act, residual)
        return _finish(F.linear(x, layer.weight, layer.bias), act, residual)
    weight, bias = layer.weight, layer.bias
    attr = _onednn_attr(act)
    fused, fused_binary = _probed("_linear_pointwise")
    if residual is not None:
        y = fused_binary(x, residual, weight, bias, "add")
        return y if act is None else act(y)
    if attr is None:
        return act(fused(x, weight, bias, "none", [], ""))
    return fused(x, weight, bias, attr[0], [], attr[1])


def conv2d(conv: nn.Conv2d, x: torch.Tensor, act: Optional[nn.Module] = None,
           residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``act(conv(x) + residual)`` (``residual`` and ``act`` optional); (B, C_in, H, W) ->
    (B, C_out, H', W'), channels-last when ``x`` is."""
    attr = _onednn_attr(act)
    if (attr is None and residual is None) or conv.padding_mode != "zeros" or isinstance(conv.padding, str) \
            or not onednn_enabled(conv, x, residual):
        return _finish(conv(x), act, residual)
    geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    fused, fused_binary = _probed("_convolution_pointwise")
    weight = conv.weight
    if residual is x and _is_same_size_depthwise(conv):
        # x + dwconv(x) is one depthwise conv whose centre taps are 1 larger (the CPE of MLLA):
        # PyTorch runs a depthwise conv with a binary post-op as conv + a separate add.
        weight = weight.clone()
        weight[:, :, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] += 1
        residual = None
    if residual is not None:  # oneDNN fuses only ReLU after the residual add
        relu = attr is not None and attr[0] == "relu"
        y = fused_binary(x, residual, weight, conv.bias, *geometry, "add", None, "relu" if relu else None, [], None)
        return y if relu or act is None else act(y)
    if attr is None:
        return act(fused(x, weight, conv.bias, *geometry, "none", [], ""))
    return fused(x, weight, conv.bias, *geometry, attr[0], [], attr[1])


def _is_same_size_depthwise(conv: nn.Conv2d) -> bool:
    """A depthwise conv (one filter per channel) with odd kernels, stride 1 and 'same' padding."""
    k = conv.kernel_size
    return conv.groups == conv.in_channels == conv.out_channels and k[0] % 2 == 1 and k[1] % 2 == 1 \
        and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1) \
        and tuple(conv.padding) == (k[0] // 2, k[1] // 2)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, keys and initialisation) whose inference on CPU runs
    oneDNN's kernel (see the module docstring). (..., in_features) -> (..., out_features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self, x)

