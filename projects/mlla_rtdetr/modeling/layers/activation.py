"""The activation resolver used by every module (timm ``create_act`` style)."""
from __future__ import annotations

from typing import Type, Union

from torch import nn

__all__ = ["get_activation", "ACTIVATIONS"]

#: Activation names understood by :func:`get_activation`.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,  # exact (erf) GELU, as in the official RT-DETR encoder and MLLA
    "leaky_relu": nn.LeakyReLU,
    "hardsigmoid": nn.Hardsigmoid,
}

ActLike = Union[str, nn.Module, Type[nn.Module], None]


def get_activation(act: ActLike) -> nn.Module:
    """An activation module from a name (``"relu"``, ``"silu"``, ``"gelu"``, ...), a module class
    (``nn.GELU``), a module instance (returned as is) or ``None`` (identity)."""
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, type) and issubclass(act, nn.Module):
        return act()
    key = str(act).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"Unknown activation '{act}'; choose one of {sorted(ACTIVATIONS)}, a module or None.")
    return ACTIVATIONS[key]()
