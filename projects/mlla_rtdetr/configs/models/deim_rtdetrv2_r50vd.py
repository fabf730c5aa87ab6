"""DEIM-RT-DETRv2-L (official ``deim_rtdetrv2/deim_r50vd_60e_coco.yml``): RT-DETRv2 (r50vd) with DEIM's model
changes (``deim.py``)."""
from .deim import deim_rtdetrv2
from .rtdetr_r50vd import model

deim_rtdetrv2(model)
