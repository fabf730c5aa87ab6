"""DEIM-D-FINE-X (official ``deim_dfine/deim_hgnetv2_x_coco.yml``): D-FINE-X with DEIM's model
changes (``deim.py``)."""
from .deim import deim_dfine
from .dfine_hgnetv2_x import model

deim_dfine(model)
