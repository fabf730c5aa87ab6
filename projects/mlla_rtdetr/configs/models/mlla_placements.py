"""Put MLLA into more places of an RT-DETR model config (in place; each returns ``model``).

* :func:`use_mlla_fusion` - CCFF fusion blocks (FPN / PAN) become CSP layers of MLLA blocks
  (``HybridEncoder(fpn_fusion=..., pan_fusion=...)``, fusion registry name "mlla"; "mlla_elan" for
  D-FINE's CSP-ELAN blocks);
* :func:`use_mlla_stages` - backbone stages become MLLA stages (a hybrid backbone;
  ``stage_blocks``, stage-block registry name "mlla");
* :func:`insert_mlla_attention` - attention-only MLLA layers after backbone stages
  (``insert_after``, stage-block registry name "mlla_attention").

The intra-scale placement is :func:`.mlla_rtdetr_encoder.use_mlla_encoder`. The same settings as
command-line overrides make the placement study's sweep files (``configs/sweeps/placements.txt``;
``placements_dfine.txt`` for D-FINE / DEIM-D-FINE models).
"""

FPN_AND_PAN = ("fpn", "pan")


def use_mlla_fusion(model, paths=FPN_AND_PAN, num_layers=1, block="mlla", **cfg):
    """Every fusion block of the given paths ("fpn", "pan") is a CSP layer of ``num_layers`` MLLA
    blocks (the official block has 3 RepVGG blocks; one MLLA block keeps RT-DETR-R18's cost);
    ``block="mlla_elan"`` on D-FINE models: their CSP-ELAN block with MLLA bottlenecks."""
    spec = dict(name=block, num_layers=num_layers, **cfg)
    for path in paths:
        if path not in FPN_AND_PAN:
            raise ValueError(f"fusion paths are 'fpn' and 'pan', got '{path}'.")
        setattr(model.encoder, f"{path}_fusion", dict(spec))
    return model


def use_mlla_stages(model, stages=("res4", "res5"), depth=1, **cfg):
    """The given backbone stages are MLLA stages of ``depth`` blocks (ResNet-vd downsampling by
    default; ``downsample="patch_merging"`` for MLLA's)."""
    model.backbone.stage_blocks = {s: dict(name="mlla", depth=depth, **cfg) for s in stages}
    return model


def insert_mlla_attention(model, after=("res4", "res5"), **cfg):
    """An attention-only MLLA layer after each of the given backbone stages (identity at init)."""
    model.backbone.insert_after = {s: dict(name="mlla_attention", **cfg) for s in after}
    return model
