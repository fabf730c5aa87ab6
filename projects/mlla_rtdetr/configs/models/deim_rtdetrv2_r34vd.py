"""DEIM-RT-DETRv2-M* (official ``deim_rtdetrv2/deim_r34vd_120e_coco.yml``): RT-DETRv2 (r34vd) with DEIM's model
changes (``deim.py``)."""
from .deim import deim_rtdetrv2
from .rtdetr_r34vd import model

deim_rtdetrv2(model)
