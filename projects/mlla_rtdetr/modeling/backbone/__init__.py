"""Backbones (detectron2 ``Backbone`` subclasses)."""
from .resnet_vd import PResNet, RESNET_VD_BLOCKS  # noqa: F401

# MLLA backbone: the MLLA helper adds its import line below.
from .mlla import MLLA_VARIANTS, MLLABackbone, MLLABlock, MLLAClassifier, build_mlla_backbone, build_mlla_classifier  # noqa: F401,E402
