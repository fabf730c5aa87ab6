"""RT-DETR-R18 (official v1, ``rtdetr_pytorch/configs/rtdetr/rtdetr_r18vd_6x_coco.yml``) on COCO.

The v1 R50 recipe (``rtdetr_r50vd_6x_coco.py``: 72 epochs, total batch 16, AdamW lr 1e-4 / wd 1e-4,
EMA 0.9999 with a 2000-iteration warm-up, grad clip 0.1, constant lr without warm-up, multi-scale
480-800 and full augmentation for every epoch) with the R18 model and the R18 YAML's parameter
groups: backbone lr 1e-5 with no decay on its norms, no decay on encoder/decoder norms and biases.
"""
from .models.rtdetr_r18vd import model, rtdetr_v1
from .rtdetr_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

rtdetr_v1(model)

# Official v1 names the encoder input-projection BN and the decoder enc_output LayerNorm
# ``.1``, so its "norm" patterns miss them and they keep weight decay (first rule).
optimizer.params.rules = [
    dict(pattern=r"^(?:encoder\.input_proj\.\d+\.norm|decoder\.enc_output\.norm)\.weight$"),
    dict(pattern=r"^(?=.*backbone)(?=.*norm).*$", lr_mult=0.1, weight_decay=0.0),
    dict(pattern=r"^(?=.*backbone)(?!.*norm).*$", lr_mult=0.1),
    dict(pattern=r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bias)).*$", weight_decay=0.0),
]
train.output_dir = "./output/rtdetr_r18vd_6x_coco"
