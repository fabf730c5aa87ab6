"""DEIM-RT-DETRv2-X (official ``deim_rtdetrv2/deim_r101vd_60e_coco.yml``): RT-DETRv2 (r101vd) with DEIM's model
changes (``deim.py``)."""
from .deim import deim_rtdetrv2
from .rtdetr_r101vd import model

deim_rtdetrv2(model)
