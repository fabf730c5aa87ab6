"""Modeling: backbones, hybrid encoder, RT-DETR decoder, matcher, criterion, meta-architecture."""
from .backbone import HGNetv2, PResNet, TimmBackbone  # noqa: F401
from .criterion import RTDETRCriterion
from .decoder import DFINETransformer, MSDeformableAttention, RTDETRTransformer
from .encoder import HybridEncoder  # noqa: F401
from .matcher import HungarianMatcher
from .meta_arch import RTDETR
from .postprocess import RTDETRPostProcessor

__all__ = [
    "PResNet",
    "HGNetv2",
    "TimmBackbone",
    "HybridEncoder",
    "MSDeformableAttention",
    "RTDETRTransformer",
    "DFINETransformer",
    "HungarianMatcher",
    "RTDETRCriterion",
    "RTDETRPostProcessor",
    "RTDETR",
]
