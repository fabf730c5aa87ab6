"""RT-DETR decoder (v1 and v2) and the D-FINE decoder built on it: deformable attention,
denoising, query selection, FDR."""

from .dfine_decoder import DFINETransformer
from .denoising import build_denoising_attn_mask, get_contrastive_denoising_training_group, inverse_sigmoid
from .ms_deform_attn import MSDeformableAttention, deformable_attention_core, per_level_num_points
from .rtdetr_decoder import MLP, RTDETRTransformer, TransformerDecoder, TransformerDecoderLayer, generate_anchors

__all__ = [
    "DFINETransformer",
    "MSDeformableAttention",
    "deformable_attention_core",
    "per_level_num_points",
    "get_contrastive_denoising_training_group",
    "build_denoising_attn_mask",
    "inverse_sigmoid",
    "MLP",
    "RTDETRTransformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "generate_anchors",
]
