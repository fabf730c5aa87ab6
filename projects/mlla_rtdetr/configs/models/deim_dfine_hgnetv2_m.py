"""DEIM-D-FINE-M (official ``deim_dfine/deim_hgnetv2_m_coco.yml``): D-FINE-M with DEIM's model
changes (``deim.py``)."""
from .deim import deim_dfine
from .dfine_hgnetv2_m import model

deim_dfine(model)
