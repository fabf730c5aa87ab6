"""DEIM's model-side changes (official ``base/deim.yml`` and ``base/rt_deim.yml``), applied in place
to a D-FINE or RT-DETRv2 model config.

DEIM keeps the architecture and changes training: the matching-aware loss (MAL, gamma 1.5)
instead of VFL, SiLU activations in the decoder and its MLP heads, a fully trainable backbone
(no frozen stem, trainable BatchNorm), the DEIM denoising boxes, and, on RT-DETRv2, a 3-layer
query position head (``as_reg``). The data (Dense O2O), schedule (flat-cosine) and EMA restart
belong to the recipes.
"""


def deim_dfine(model):
    """D-FINE -> DEIM-D-FINE (``deim_dfine/deim_hgnetv2_*_coco.yml``)."""
    model.backbone.freeze_at = -1
    model.backbone.freeze_norm = False
    model.decoder.activation = "silu"
    model.decoder.mlp_act = "silu"
    model.criterion.losses = ["mal", "boxes", "local"]
    model.criterion.weight_dict = {"loss_mal": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_fgl": 0.15,
                                   "loss_ddf": 1.5}
    model.criterion.gamma = 1.5
    return model


def deim_rtdetrv2(model):
    """RT-DETRv2 -> DEIM-RT-DETRv2 (``deim_rtdetrv2/deim_r*vd_*_coco.yml``)."""
    model.backbone.freeze_at = -1
    model.backbone.freeze_norm = False
    model.decoder.activation = "silu"
    model.decoder.mlp_act = "silu"
    model.decoder.query_pos_method = "as_reg"
    model.decoder.denoising_abs_box_size = True
    model.criterion.losses = ["mal", "boxes"]
    model.criterion.weight_dict = {"loss_mal": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    model.criterion.gamma = 1.5
    model.criterion.use_uni_set = False
    return model
