"""MLLA-RT-DETR: Mamba-Like Linear Attention in real-time detection transformers, on detectron2."""

__version__ = "0.1.0"
