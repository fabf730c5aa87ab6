"""RT-DETR-R101 (official v1, ``rtdetr_pytorch/configs/rtdetr/rtdetr_r101vd_6x_coco.yml``) on COCO.

The v1 R50 recipe (``rtdetr_r50vd_6x_coco.py``) with the R101 model and the R101 YAML's parameter
groups, which replace the whole list: backbone lr 1e-6, no group without weight decay.
"""
from .models.rtdetr_r101vd import model, rtdetr_v1
from .rtdetr_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

rtdetr_v1(model)

optimizer.params.rules = [
    # the two norms official v1 names ".1" keep weight decay (see rtdetr_r50vd_6x_coco.py)
    dict(pattern=r"^(?:encoder\.input_proj\.\d+\.norm|decoder\.enc_output\.norm)\.weight$"),
    dict(pattern=r"backbone", lr_mult=0.01),
]
train.output_dir = "./output/rtdetr_r101vd_6x_coco"
