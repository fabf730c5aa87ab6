"""DEIM-D-FINE-L (official ``deim_dfine/deim_hgnetv2_l_coco.yml``): D-FINE-L with DEIM's model
changes (``deim.py``)."""
from .deim import deim_dfine
from .dfine_hgnetv2_l import model

deim_dfine(model)
