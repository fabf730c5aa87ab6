"""Common optimizers (LazyCall of ``torch.optim`` on :func:`mlla_rtdetr.engine.optim.get_param_groups`).

Usage in a recipe::

    optimizer = get_config("common/optim.py").AdamW
    optimizer.lr = 1e-4
    optimizer.params.backbone_lr_multiplier = 0.1   # backbone lr = 1e-5
    optimizer.params.weight_decay_norm = 0.0        # no decay on norm layers (by module type)
    optimizer.params.weight_decay_bias = 0.0        # no decay on biases

``optimizer.params.model`` is set by the engine. Each parameter gets the defaults (lr,
weight_decay), then the by-kind settings above, then the first matching regex in
``optimizer.params.rules`` (``dict(pattern=..., lr=..., lr_mult=..., weight_decay=...)``).
``AdamW_rtdetr_v1`` / ``AdamW_rtdetr_v2`` / ``AdamW_rtdetr_v2_r18`` reproduce the official YAML
grouping exactly (rules only, no by-kind settings).
"""
import torch

from detectron2.config import LazyCall as L

from mlla_rtdetr.engine.optim import (
    RTDETR_V1_RULES,
    RTDETR_V2_R18_RULES,
    RTDETR_V2_RULES,
    get_param_groups,
)

# RT-DETR defaults: AdamW lr 1e-4, wd 1e-4, backbone lr x0.1, no weight decay on norms/biases.
AdamW = L(torch.optim.AdamW)(
    params=L(get_param_groups)(
        model=None,
        base_lr="${..lr}",
        weight_decay="${..weight_decay}",
        weight_decay_norm=0.0,
        weight_decay_bias=0.0,
        backbone_lr_multiplier=0.1,
        rules=[],
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)


def _official(rules):
    return L(torch.optim.AdamW)(
        params=L(get_param_groups)(
            model=None,
            base_lr="${..lr}",
            weight_decay="${..weight_decay}",
            weight_decay_norm=None,
            weight_decay_bias=None,
            backbone_lr_multiplier=None,
            rules=[dict(r) for r in rules],
            # A backbone with frozen norms has no trainable "norm" parameter for rule 1.
            strict_rules=False,
        ),
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=1e-4,
    )


# rtdetr_pytorch (v1) r18vd/r34vd: backbone lr x0.1 (norms without decay), enc/dec norm+bias wd 0.
AdamW_rtdetr_v1 = _official(RTDETR_V1_RULES)
# rtdetrv2_pytorch include/optimizer.yml (r50/r101): backbone non-norm lr x0.1, enc/dec norm wd 0.
AdamW_rtdetr_v2 = _official(RTDETR_V2_RULES)
# rtdetrv2_r18vd_120e_coco.yml: every norm without weight decay, one lr.
AdamW_rtdetr_v2_r18 = _official(RTDETR_V2_R18_RULES)

SGD = L(torch.optim.SGD)(
    params=L(get_param_groups)(
        model=None,
        base_lr="${..lr}",
        weight_decay="${..weight_decay}",
        weight_decay_norm=0.0,
        weight_decay_bias=None,
        backbone_lr_multiplier=None,
        rules=[],
    ),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
)
