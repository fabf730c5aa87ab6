"""RT-DETRv2-R18 with 3 sampling points per level (official ``rtdetrv2_r18vd_sp3_120e_coco.yml``).

The RT-DETRv2-R18 recipe (``rtdetrv2_r18vd_120e_coco.py``) with ``num_points`` [3, 3, 3] instead of
[4, 4, 4] in the decoder's deformable cross-attention: 64,800 sampling points per image (300 queries
x 8 heads x 3 levels x 3 x 3 decoder layers), the RT-DETRv2 ablation on sampling points. Same schedule
and starting point as the base recipe.
"""
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.decoder.num_points = [3, 3, 3]
train.output_dir = "./output/rtdetrv2_r18vd_sp3_120e_coco"
