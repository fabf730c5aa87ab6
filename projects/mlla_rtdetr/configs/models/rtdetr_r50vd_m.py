"""RT-DETR-R50-m: the R50 model with CSP expansion 0.5 whose inference uses the 3rd of its 6
decoder layers (``eval_idx=2``); the later layers only train."""
from .rtdetr_r50vd import model, rtdetr_v1  # noqa: F401

model.encoder.expansion = 0.5
model.decoder.eval_idx = 2
