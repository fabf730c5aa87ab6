"""Hybrid encoder and the registry of intra-scale blocks.

Importing this package registers every built-in intra-scale block ("softmax" = AIFI, "mlla").
"""
from .intra_scale import INTRA_SCALE_BLOCKS, AIFI, build_2d_sincos_position_embedding  # noqa: F401
from .hybrid_encoder import CSPRepLayer, HybridEncoder, RepVggBlock  # noqa: F401
from . import mlla_intra_scale  # noqa: F401  (registers "mlla")
