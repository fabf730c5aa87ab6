"""Backbones (detectron2 ``Backbone`` subclasses).

Importing this package registers the built-in stage blocks of :data:`STAGE_BLOCKS` ("mlla",
"mlla_attention"), usable by every :class:`StagedBackbone` (``stage_blocks`` / ``insert_after``).
"""
from .staged import STAGE_BLOCKS, StagedBackbone, StageInfo  # noqa: F401
from .resnet_vd import PResNet, RESNET_VD_BLOCKS  # noqa: F401
from .mlla import MLLA_VARIANTS, MLLABackbone, MLLAClassifier, build_mlla_backbone, build_mlla_classifier  # noqa: F401
from .timm_backbone import RTDETR_STRIDES, TimmBackbone  # noqa: F401
from .hgnetv2 import HGNETV2_VARIANTS, HGNetv2  # noqa: F401
from . import mlla_stages  # noqa: F401  (registers "mlla", "mlla_attention")
