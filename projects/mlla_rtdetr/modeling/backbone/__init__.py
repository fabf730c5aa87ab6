"""Backbones (detectron2 ``Backbone`` subclasses)."""
from .resnet_vd import PResNet, RESNET_VD_BLOCKS  # noqa: F401
from .mlla import MLLA_VARIANTS, MLLABackbone, MLLAClassifier, build_mlla_backbone, build_mlla_classifier  # noqa: F401
from .timm_backbone import RTDETR_STRIDES, TimmBackbone  # noqa: F401
from .hgnetv2 import HGNETV2_VARIANTS, HGNetv2  # noqa: F401
