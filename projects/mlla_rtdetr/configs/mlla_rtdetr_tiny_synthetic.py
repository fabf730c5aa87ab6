"""Tiny MLLA-RT-DETR on the embedded ``synthetic_shapes`` dataset, for tests and CPU runs.

``rtdetr_tiny_synthetic.py`` (same data, decoder, optimizer and schedule; imported, not copied)
with a tiny MLLA backbone (C=16, one block per stage, head width 16; res3..res5 widths 32/64/128)
and the MLLA intra-scale block on S5 instead of AIFI, trained from scratch::

    python tools/train_net.py --config-file projects/mlla_rtdetr/configs/mlla_rtdetr_tiny_synthetic.py
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling.backbone.mlla import MLLABackbone

from .models.mlla_rtdetr_encoder import S5, use_mlla_encoder
from .rtdetr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = L(MLLABackbone)(
    embed_dim=16,
    depths=(1, 1, 1, 1),
    num_heads=(1, 2, 4, 8),
    mlp_ratio=4.0,
    drop_path_rate=0.0,
    out_features=("res3", "res4", "res5"),
)
use_mlla_encoder(model, S5)

train.output_dir = "./output/mlla_rtdetr_tiny_synthetic"
