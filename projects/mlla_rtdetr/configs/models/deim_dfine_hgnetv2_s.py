"""DEIM-D-FINE-S (official ``deim_dfine/deim_hgnetv2_s_coco.yml``): D-FINE-S with DEIM's model
changes (``deim.py``)."""
from .deim import deim_dfine
from .dfine_hgnetv2_s import model

deim_dfine(model)
