"""Switch a model config's hybrid encoder to MLLA intra-scale blocks.

``use_mlla_encoder(model, levels)`` replaces AIFI (softmax attention on S5) by MLLA blocks on the
given levels (indices into the encoder inputs: 0 = S3/stride 8, 1 = S4/stride 16, 2 = S5/stride
32). Linear attention makes S4 (and S3) affordable; the CCFF fusion is unchanged.
"""

S5 = (2,)
S4_S5 = (1, 2)


def use_mlla_encoder(model, levels=S5, drop_path=0.0, num_layers=None):
    """In place: ``model.encoder`` uses "mlla" on ``levels``; returns ``model``."""
    levels = [int(i) for i in levels]
    model.encoder.use_encoder_idx = levels
    model.encoder.attention = ["mlla"] * len(levels)
    model.encoder.attention_cfg = [dict(drop_path=drop_path) for _ in levels]
    if num_layers is not None:
        model.encoder.num_encoder_layers = num_layers
    return model
