"""Size variants are derived from their base recipe (they import its top-level objects and set
what differs): each differs from its base in exactly the entries its official config changes, and
each resolves to the config it had before it was derived (``tests/fixtures/recipes/``).

A deliberate change to one of the fixture's recipes rewrites the fixture:
``python tests/test_recipe_derivation.py``.
"""
import copy
import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from detectron2.config import instantiate

from mlla_rtdetr.config import get_config

TRAINING = ("dataloader", "optimizer", "lr_multiplier", "train")
RESOLVED = Path(__file__).parent / "fixtures" / "recipes" / "derived_variants_resolved.json"


def _flat(node, prefix=""):
    """Dotted key -> leaf value of a resolved config (callables as their qualified names, other
    objects as their repr)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    elif hasattr(node, "__qualname__"):
        return {prefix: f"{node.__module__}.{node.__qualname__}"}
    else:
        return {prefix: node if isinstance(node, (int, float, str, bool, type(None))) else repr(node)}
    out = {}
    for k, v in items:
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _differing(a, b, sections):
    fa = {k: v for s in sections for k, v in _flat(a[s], s).items()}
    fb = {k: v for s in sections for k, v in _flat(b[s], s).items()}
    return {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


def _assert_differs_exactly(variant, base, sections, expected):
    keys = _differing(get_config(variant), get_config(base), sections)
    unexpected = sorted(k for k in keys if not k.startswith(tuple(expected)))
    assert not unexpected, f"{variant} vs {base}: unexpected differences {unexpected}"
    unchanged = [e for e in expected if not any(k.startswith(e) for k in keys)]
    assert not unchanged, f"{variant} vs {base}: expected differences missing {unchanged}"


@pytest.mark.parametrize("variant, base, expected", [
    # RT-DETR v1: R18 and R101 from R50, R34 from R18 (the official YAMLs all include the R50 one)
    ("rtdetr_r18vd_6x_coco.py", "rtdetr_r50vd_6x_coco.py", ["optimizer.params.rules", "train.output_dir"]),
    ("rtdetr_r34vd_6x_coco.py", "rtdetr_r18vd_6x_coco.py", ["train.output_dir"]),
    ("rtdetr_r101vd_6x_coco.py", "rtdetr_r50vd_6x_coco.py", ["optimizer.params.rules", "train.output_dir"]),
    ("rtdetr_r50vd_m_6x_coco.py", "rtdetr_r50vd_6x_coco.py", ["train.output_dir"]),
    # RT-DETRv2: 120-epoch R18 / R34 and R50-m / R101 from R50
    ("rtdetrv2_r18vd_120e_coco.py", "rtdetrv2_r50vd_6x_coco.py",
     ["dataloader.train.stop_aug_epoch", "dataloader.train.multiscale_sizes", "optimizer.params.rules",
      "train.epochs", "train.output_dir"]),
    ("rtdetrv2_r34vd_120e_coco.py", "rtdetrv2_r50vd_6x_coco.py",
     ["dataloader.train.stop_aug_epoch", "optimizer.params.rules", "train.epochs", "train.output_dir"]),
    ("rtdetrv2_r50vd_m_7x_coco.py", "rtdetrv2_r50vd_6x_coco.py",
     ["dataloader.train.stop_aug_epoch", "train.epochs", "train.output_dir"]),
    ("rtdetrv2_r101vd_6x_coco.py", "rtdetrv2_r50vd_6x_coco.py", ["optimizer.params.rules", "train.output_dir"]),
    # D-FINE (DEIM repository YAMLs): X and M from L, S from M, N from S
    ("dfine_hgnetv2_x_coco.py", "dfine_hgnetv2_l_coco.py",
     ["dataloader.train.multiscale_sizes.base_repeat", "optimizer.params.rules.0.lr", "train.model_ema.restart_decay",
      "train.output_dir"]),
    ("dfine_hgnetv2_m_coco.py", "dfine_hgnetv2_l_coco.py",
     ["dataloader.train.multiscale_sizes.base_repeat", "dataloader.train.stop_aug_epoch", "optimizer.lr",
      "optimizer.weight_decay", "optimizer.params", "train.epochs", "train.model_ema.restart_epoch", "train.output_dir"]),
    ("dfine_hgnetv2_s_coco.py", "dfine_hgnetv2_m_coco.py",
     ["dataloader.train.multiscale_sizes.base_repeat", "optimizer.params.rules.0.lr", "optimizer.params.rules.1.lr",
      "train.output_dir"]),
    ("dfine_hgnetv2_n_coco.py", "dfine_hgnetv2_s_coco.py",
     ["dataloader.train.multiscale_sizes", "dataloader.train.stop_aug_epoch", "dataloader.train.total_batch_size",
      "optimizer.lr", "optimizer.params.base_lr", "optimizer.params.rules.0.lr", "optimizer.params.rules.1.lr",
      "train.epochs", "train.model_ema.restart_epoch", "train.output_dir"]),
    # DEIM-D-FINE: M, L and N from S, X from L; DEIM-RT-DETRv2: R34 from R18, R50 from R34, R50-m / R101 from R50
    ("deim_dfine_hgnetv2_m_coco.py", "deim_dfine_hgnetv2_s_coco.py",
     ["dataloader.train.batch_augment", "dataloader.train.mapper.policy_epochs", "lr_multiplier.decay_end",
      "lr_multiplier.flat", "optimizer.params.rules.0.lr", "train.epochs", "train.model_ema.restart_epoch",
      "train.output_dir"]),
    ("deim_dfine_hgnetv2_l_coco.py", "deim_dfine_hgnetv2_s_coco.py",
     ["dataloader.train.batch_augment", "dataloader.train.mapper.policy_epochs", "lr_multiplier.decay_end",
      "lr_multiplier.flat", "optimizer.lr", "optimizer.weight_decay", "optimizer.params", "train.epochs",
      "train.model_ema.restart_epoch", "train.output_dir"]),
    ("deim_dfine_hgnetv2_x_coco.py", "deim_dfine_hgnetv2_l_coco.py",
     ["dataloader.train.batch_augment.multiscale_sizes.base_repeat", "optimizer.params.rules.0.lr",
      "train.model_ema.restart_decay", "train.output_dir"]),
    ("deim_dfine_hgnetv2_n_coco.py", "deim_dfine_hgnetv2_s_coco.py",
     ["dataloader.train.batch_augment", "dataloader.train.mapper.policy_epochs", "dataloader.train.total_batch_size",
      "lr_multiplier", "optimizer.lr", "optimizer.params", "train.epochs", "train.model_ema.restart_epoch",
      "train.output_dir"]),
    ("deim_rtdetrv2_r34vd_120e_coco.py", "deim_rtdetrv2_r18vd_120e_coco.py", ["optimizer.params.rules", "train.output_dir"]),
    ("deim_rtdetrv2_r50vd_60e_coco.py", "deim_rtdetrv2_r34vd_120e_coco.py",
     ["dataloader.train.batch_augment.mixup_epochs", "dataloader.train.batch_augment.multiscale_stop_epoch",
      "dataloader.train.mapper.policy_epochs", "lr_multiplier.decay_end", "lr_multiplier.flat",
      "optimizer.params.rules.0.lr", "train.epochs", "train.model_ema.restart_epoch", "train.output_dir"]),
    ("deim_rtdetrv2_r50vd_m_60e_coco.py", "deim_rtdetrv2_r50vd_60e_coco.py", ["train.output_dir"]),
    ("deim_rtdetrv2_r101vd_60e_coco.py", "deim_rtdetrv2_r50vd_60e_coco.py", ["optimizer.params.rules.0.lr", "train.output_dir"]),
    # MLLA-RT-DETR: S and B train exactly as T
    ("mlla_rtdetr_s_6x_coco.py", "mlla_rtdetr_t_6x_coco.py", ["train.output_dir"]),
    ("mlla_rtdetr_b_6x_coco.py", "mlla_rtdetr_t_6x_coco.py", ["train.output_dir"]),
])
def test_recipe_training_settings_differ_from_the_base_only_where_expected(variant, base, expected):
    _assert_differs_exactly(variant, base, TRAINING, expected)


@pytest.mark.parametrize("variant, base, expected", [
    ("models/rtdetr_r34vd.py", "models/rtdetr_r18vd.py", ["model.backbone.depth", "model.decoder.num_layers"]),
    ("models/mlla_rtdetr_s.py", "models/mlla_rtdetr_t.py",
     ["model.backbone.depths", "model.encoder.hidden_dim", "model.encoder.dim_feedforward",
      "model.decoder.feat_channels"]),
    ("models/mlla_rtdetr_b.py", "models/mlla_rtdetr_s.py",
     ["model.backbone.embed_dim", "model.backbone.num_heads", "model.backbone.drop_path_rate",
      "model.encoder.in_channels"]),
])
def test_model_differs_from_the_base_only_where_expected(variant, base, expected):
    _assert_differs_exactly(variant, base, ("model",), expected)


def test_mlla_s_head_is_rtdetr_r101s():
    s, r101 = get_config("models/mlla_rtdetr_s.py").model, get_config("models/rtdetr_r101vd.py").model
    assert _flat(s.encoder, "encoder") | _flat(s.decoder, "decoder") == {
        **_flat(r101.encoder, "encoder"), "encoder.in_channels.0": 128, "encoder.in_channels.1": 256,
        "encoder.in_channels.2": 512, **_flat(r101.decoder, "decoder")}


def _groups(cfg, model):
    params = copy.deepcopy(cfg.optimizer.params)
    params.model = model
    return [sorted(n for n, p in model.named_parameters() if any(p is q for q in g["params"]))
            for g in instantiate(params)]


def test_official_r34_group_patterns_select_the_r18_groups():
    """The v1 R34 YAML writes ``(?=.*norm|bn)`` and ``(?:norm|bn|bias)`` where R18 writes
    ``(?=.*norm)`` and ``(?:norm|bias)``; on the R34 model both select the same parameters."""
    r34 = get_config("rtdetr_r34vd_6x_coco.py")
    model = instantiate(r34.model)
    official = copy.deepcopy(r34)
    official.optimizer.params.rules[1].pattern = r"^(?=.*backbone)(?=.*norm|bn).*$"
    official.optimizer.params.rules[2].pattern = r"^(?=.*backbone)(?!.*norm|bn).*$"
    official.optimizer.params.rules[3].pattern = r"^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn|bias)).*$"
    ours, theirs = _groups(r34, model), _groups(official, model)
    assert sum(len(g) for g in ours) == 404 and len(ours) == 4
    assert ours == theirs


# The official v1 R34 YAML spells the group patterns differently from R18's; the derived recipe
# uses R18's, which select the same parameters (test_official_r34_group_patterns_select_the_r18_groups).
R34_PATTERNS = {f"optimizer.params.rules.{i}.pattern" for i in (1, 2, 3)}


def _resolved_fixture():
    return json.loads(RESOLVED.read_text())


@pytest.mark.parametrize("name", sorted(_resolved_fixture()))
def test_derived_recipe_resolves_as_before(name):
    before, now = _resolved_fixture()[name], _flat(get_config(name))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k, "<absent>") != now.get(k, "<absent>"))
    if name == "rtdetr_r34vd_6x_coco.py":
        r18 = _flat(get_config("rtdetr_r18vd_6x_coco.py"))
        assert all(now[k] == r18[k] for k in R34_PATTERNS)
        changed = [k for k in changed if k not in R34_PATTERNS]
    assert not changed, f"{name} resolves differently: " + "; ".join(
        f"{k}: {before.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}" for k in changed[:20])


if __name__ == "__main__":
    resolved = {name: _flat(get_config(name)) for name in _resolved_fixture()}
    RESOLVED.write_text(json.dumps(resolved, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESOLVED} ({len(resolved)} recipes)", file=sys.stderr)
