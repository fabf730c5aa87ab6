"""Backbones (detectron2 ``Backbone`` subclasses)."""
from .resnet_vd import PResNet, RESNET_VD_BLOCKS  # noqa: F401
from .mlla import MLLA_VARIANTS, MLLABackbone, MLLAClassifier, build_mlla_backbone, build_mlla_classifier  # noqa: F401
