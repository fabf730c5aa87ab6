"""RT-DETR-L (the RT-DETR paper's HGNetv2-L model, official v1 decoder) on COCO.

The official v1 recipe for L exists only for PaddlePaddle (``rtdetr_paddle/configs/rtdetr/
rtdetr_hgnetv2_l_6x_coco.yml``); this is the v1 RT-DETR-R50 recipe (``rtdetr_r50vd_6x_coco.py``:
72 epochs, batch 16, AdamW 1e-4 / wd 1e-4, v1 parameter groups, EMA 0.9999, clip 0.1, no
stop-augmentation) with the HGNetv2-L model and that YAML's backbone learning rate (``lr_mult_list``
0.05: 5e-6; the stem is frozen). The official PyTorch weights of this model are the Paddle
RT-DETR-L weights converted, ``rtdetrv2_hgnetv2_l_6x_coco_from_paddle.pth`` (same architecture,
same outputs with either decoder version).
"""
from .models.rtdetr_hgnetv2_l import model, rtdetr_v1
from .rtdetr_r50vd_6x_coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401

rtdetr_v1(model)
optimizer.params.rules = [
    dict(pattern=r"^(?:encoder\.input_proj\.\d+\.norm|decoder\.enc_output\.norm)\.weight$"),
    dict(pattern=r"backbone", lr_mult=0.05),
    dict(pattern=r"^(?=.*encoder(?=.*bias|.*norm.*weight)).*$", weight_decay=0.0),
    dict(pattern=r"^(?=.*decoder(?=.*bias|.*norm.*weight)).*$", weight_decay=0.0),
]
train.output_dir = "./output/rtdetr_hgnetv2_l_6x_coco"
