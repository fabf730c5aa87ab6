"""DEIM-D-FINE-N (official ``deim_dfine/deim_hgnetv2_n_coco.yml``): D-FINE-N with DEIM's model
changes (``deim.py``)."""
from .deim import deim_dfine
from .dfine_hgnetv2_n import model

deim_dfine(model)
