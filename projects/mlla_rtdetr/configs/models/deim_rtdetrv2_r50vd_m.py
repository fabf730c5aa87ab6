"""DEIM-RT-DETRv2-M (official ``deim_rtdetrv2/deim_r50vd_m_60e_coco.yml``): RT-DETRv2 (r50vd_m) with DEIM's model
changes (``deim.py``)."""
from .deim import deim_rtdetrv2
from .rtdetr_r50vd_m import model

deim_rtdetrv2(model)
model.decoder.num_layers = 3  # DEIM-R50-m: 3 layers, the last one evaluated (RT-DETRv2-M has 6)
