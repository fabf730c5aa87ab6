"""RT-DETR-L / RT-DETRv2-L: HGNetv2-L backbone (official ``rtdetrv2_hgnetv2_l_6x_coco.yml``).

HGNetv2-L (= PP-HGNetV2-B4; FrozenBatchNorm2d, stem frozen, stages 1-3 at strides 8/16/32 with
512/1024/2048 channels) with the RT-DETR-R50 head: hybrid encoder width 256 (CSP expansion 1.0),
6-layer v2 decoder. Parameters: 32,925,036 (backbone 13,507,680), as the official model.
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling import HGNetv2

from .rtdetr_r50vd import model, rtdetr_v1  # noqa: F401

model.backbone = L(HGNetv2)(
    name="L",
    out_indices=(1, 2, 3),  # official return_idx
    freeze_at=0,  # official semantics: 0 freezes the stem
    freeze_norm=True,
    use_lab=False,
)
