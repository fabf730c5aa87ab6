"""DEIM-RT-DETRv2-S (official ``deim_rtdetrv2/deim_r18vd_120e_coco.yml``): RT-DETRv2 (r18vd) with DEIM's model
changes (``deim.py``)."""
from .deim import deim_rtdetrv2
from .rtdetr_r18vd import model

deim_rtdetrv2(model)
