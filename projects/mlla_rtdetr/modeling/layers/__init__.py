"""Blocks shared by every model family (timm ``layers`` / detrex ``layers`` style).

* :mod:`.activation` - :func:`get_activation`, the one activation resolver.
* :mod:`.norm` - :func:`get_norm` (2D norms by name), :func:`freeze_batch_norm`, and
  :func:`convert_sync_batch_norm` (BatchNorm over all processes; :class:`SyncBatchNorm2d` off CUDA).
* :mod:`.conv` - :class:`ConvNormAct`, conv -> norm -> act with the official ``conv`` / ``norm`` keys;
  :func:`fold_conv_norms` folds BatchNorms into the convs before them for inference;
  :func:`downsample_in_row_bands` evaluates a wide stride-2 chain in bands of rows on CPU.
* :mod:`.fused` - :class:`Linear` / :func:`linear` / :func:`conv2d`: oneDNN kernels on CPU (linear
  layers forward and backward, fused activation and residual in inference), plain PyTorch ops otherwise.
* :mod:`.memory_format` - :func:`is_channels_last`, :func:`as_memory_format_of`, :func:`dense_grad`:
  keep maps and their gradients dense in the channels-last layout the CPU convolutions use.
* :mod:`.mlp` - :class:`MLP` (RT-DETR heads, ``layers.{i}``) and :class:`Mlp` (transformer FFN,
  ``fc1`` / ``fc2``).
* :mod:`.mlla` - the MLLA block: 2D RoPE, linear attention with LePE, the gated block, token/map
  layout helpers. Used by the MLLA backbone and by every MLLA placement in the detector.
* :mod:`.registry` - :class:`Registry`, fvcore's registry with names chosen at registration.
"""
from .activation import get_activation
from .conv import ConvNormAct, conv_norm_residual, downsample_in_row_bands, fold_conv_norms
from .fused import CPU_KERNELS, Linear, conv2d, cpu_kernels, linear, onednn_enabled, onednn_kernels, set_cpu_kernels
from .mlla import (
    LinearAttention,
    MLLABlock,
    RoPE2D,
    apply_rope,
    init_mlla_weights,
    map_to_tokens,
    mlla_linear_attention,
    rope_tables,
    tokens_to_map,
)
from .memory_format import as_memory_format_of, dense_grad, is_channels_last
from .mlp import MLP, Mlp
from .norm import SyncBatchNorm2d, convert_sync_batch_norm, freeze_batch_norm, get_norm
from .registry import Registry

__all__ = [k for k in globals() if not k.startswith("_")]
