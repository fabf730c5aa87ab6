"""MLLA-RT-DETR: Mamba-Like Linear Attention in real-time detection transformers, on detectron2."""

__version__ = "0.1.0"

from .config import register_resolvers as _register_resolvers

_register_resolvers()
