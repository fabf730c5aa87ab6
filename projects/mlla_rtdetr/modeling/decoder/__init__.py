"""RT-DETR decoder: deformable attention, denoising, query selection (v1 and v2)."""

from .denoising import build_denoising_attn_mask, get_contrastive_denoising_training_group, inverse_sigmoid
from .ms_deform_attn import MSDeformableAttention, deformable_attention_core, per_level_num_points
from .rtdetr_decoder import MLP, RTDETRTransformer, TransformerDecoder, TransformerDecoderLayer, generate_anchors

__all__ = [
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
