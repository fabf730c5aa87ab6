"""Hybrid encoder and the registries of its intra-scale and fusion blocks.

Importing this package registers every built-in block: intra-scale "softmax" (AIFI) and "mlla";
fusion "csprep" (official CSPRep of RepVGG blocks), "mlla" (CSP layer of MLLA blocks), "rep_ncsp_elan4"
(D-FINE's CSP-ELAN) and "mlla_elan" (D-FINE's CSP-ELAN with MLLA blocks).
"""
from .intra_scale import INTRA_SCALE_BLOCKS, AIFI, build_2d_sincos_position_embedding  # noqa: F401
from .fusion import FUSION_BLOCKS, CSPRepLayer, RepVggBlock  # noqa: F401
from .hybrid_encoder import HybridEncoder  # noqa: F401
from . import mlla_intra_scale  # noqa: F401  (registers "mlla")
from . import mlla_fusion  # noqa: F401  (registers "mlla", "mlla_elan")
