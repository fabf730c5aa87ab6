"""D-FINE-L (official ``deim_dfine/dfine_hgnetv2_l_coco.yml`` on ``base/dfine_hgnetv2.yml``,
ShihuaHuang95/DEIM @ a9aa4ad), the base of every D-FINE / DEIM-D-FINE model config.

The RT-DETR-R50 model config with what D-FINE changes: HGNetv2-B4 (stem frozen,
FrozenBatchNorm2d); the D-FINE hybrid encoder (RepNCSPELAN4 fusion blocks, SCDown downsampling,
lateral convs without activation); the D-FINE decoder ([3, 6, 3] points, ``reg_max`` 32,
``reg_scale`` 4, identity input projections for 256-channel maps) and the D-FINE losses (VFL, L1,
GIoU, FGL, DDF over the GO-LSD union of matches). The other sizes import ``model`` and change what
their YAML changes; ``deim.py`` turns any of them into its DEIM-D-FINE counterpart. Parameters:
31,244,152, as the official model (``tests/test_deim_configs.py``).
"""
from detectron2.config import LazyCall as L

from mlla_rtdetr.modeling import DFINETransformer, HGNetv2

from .rtdetr_r50vd import model

model.backbone = L(HGNetv2)(
    name="B4",
    out_indices=(1, 2, 3),  # official return_idx
    freeze_at=0,  # official freeze_at 0 with freeze_stem_only: the stem only
    freeze_norm=True,
    use_lab=False,
)
model.encoder.fpn_fusion = "rep_ncsp_elan4"
model.encoder.pan_fusion = "rep_ncsp_elan4"
model.encoder.lateral_act = False
model.encoder.downsample = "scdown"

model.decoder._target_ = DFINETransformer
model.decoder.num_points = [3, 6, 3]
model.decoder.mlp_act = "relu"
model.decoder.reg_max = 32
model.decoder.reg_scale = 4.0
model.decoder.layer_scale = 1

model.criterion.weight_dict = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_fgl": 0.15, "loss_ddf": 1.5}
model.criterion.losses = ["vfl", "boxes", "local"]
model.criterion.reg_max = "${..decoder.reg_max}"
model.criterion.use_uni_set = True
