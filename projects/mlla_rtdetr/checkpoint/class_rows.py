"""Fine-tuning across class sets: the class-dependent tensors of a detector, and carrying the rows
of the classes a dataset shares with a checkpoint (by name) into freshly initialised ones.

A module declares the tensors whose first dimension is indexed by class with a method
``class_dependent_tensors() -> {name: extra_rows}`` (names relative to the module; ``extra_rows``
trailing rows that are not classes, e.g. 1 for a denoising embedding's padding row). The RT-DETR
decoder declares its encoder and per-layer score heads and the denoising class embedding; another
decoder (D-FINE, DEIM) declares its own the same way, and :func:`class_dependent_keys` finds them
anywhere in the model.

Class names are matched case-insensitively, with ``_`` / ``-`` read as spaces, through
:data:`CLASS_SYNONYMS` (names of other datasets -> the COCO name), or through an explicit mapping
that wins over both. Checkpoints that record no class names and have 80 class rows are taken as
COCO's 80 classes in their standard order (:data:`COCO_CLASSES`: official RT-DETR / RT-DETRv2 /
D-FINE / DEIM COCO models use the contiguous COCO order with ``remap_mscoco_category``).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from ..errors import CheckpointError

__all__ = [
    "CLASS_SYNONYMS",
    "COCO_CLASSES",
    "class_dependent_keys",
    "match_class_rows",
    "normalize_class_name",
    "transfer_class_rows",
]

COCO_CLASSES: Tuple[str, ...] = tuple(c["name"] for c in COCO_CATEGORIES if c["isthing"])

#: Other spellings -> the COCO name: Pascal VOC's names and a few common ones (VisDrone's "people"
#: and "pedestrian", "motorbike", "bike"). Anything else: ``train.init_class_map``.
CLASS_SYNONYMS: Dict[str, str] = {
    "people": "person", "pedestrian": "person", "human": "person", "persons": "person",
    "motorbike": "motorcycle",
    "aeroplane": "airplane", "plane": "airplane",
    "bike": "bicycle",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "sofa": "couch",
    "tvmonitor": "tv", "tv monitor": "tv", "television": "tv",
    "cellphone": "cell phone", "mobile phone": "cell phone",
    "ship": "boat",
}


def normalize_class_name(name: str) -> str:
    """Lower case, ``_`` / ``-`` as spaces, single spaces."""
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def _lookup(name: str, index: Mapping[str, int]) -> Optional[int]:
    key = normalize_class_name(name)
    if key in index:
        return index[key]
    synonym = CLASS_SYNONYMS.get(key)
    return index.get(synonym) if synonym is not None else None


def match_class_rows(dataset_classes: Sequence[str], checkpoint_classes: Sequence[str],
                     mapping: Optional[Mapping[str, Optional[str]]] = None) -> List[Optional[int]]:
    """For each dataset class, the checkpoint's row (class index) it takes, or None for a new class.

    ``mapping``: dataset class -> checkpoint class (or None / "" for "no row: a new class"); it wins
    over names and synonyms. A mapping entry naming an unknown class raises :class:`CheckpointError`.
    """
    index = {normalize_class_name(c): i for i, c in enumerate(checkpoint_classes)}
    mapping = dict(mapping or {})
    unknown_src = [k for k in mapping if normalize_class_name(k) not in {normalize_class_name(c) for c in dataset_classes}]
    unknown_dst = [v for v in mapping.values() if v and normalize_class_name(v) not in index]
    if unknown_src or unknown_dst:
        raise CheckpointError(
            "train.init_class_map names classes that do not exist: "
            + "; ".join(([f"dataset classes {unknown_src} (the dataset has {list(dataset_classes)})"] if unknown_src else [])
                        + ([f"checkpoint classes {unknown_dst} (e.g. {list(checkpoint_classes)[:8]})"] if unknown_dst else []))
        )
    explicit = {normalize_class_name(k): v for k, v in mapping.items()}
    rows: List[Optional[int]] = []
    for name in dataset_classes:
        key = normalize_class_name(name)
        if key in explicit:
            rows.append(index[normalize_class_name(explicit[key])] if explicit[key] else None)
        else:
            rows.append(_lookup(name, index))
    return rows


def class_dependent_keys(model: nn.Module) -> Dict[str, int]:
    """State-dict key -> number of trailing non-class rows, for every tensor a module of ``model``
    declares class-dependent (``class_dependent_tensors()``, see the module docstring)."""
    out: Dict[str, int] = {}
    for prefix, module in model.named_modules():
        declare = getattr(module, "class_dependent_tensors", None)
        if callable(declare):
            for name, extra in declare().items():
                out[f"{prefix}.{name}" if prefix else name] = int(extra)
    return out


def transfer_class_rows(state: Mapping[str, torch.Tensor], fresh: Mapping[str, torch.Tensor],
                        keys: Mapping[str, int], rows: Sequence[Optional[int]]
                        ) -> "Dict[str, torch.Tensor]":
    """New class-dependent tensors: ``fresh`` (a newly initialised model's values, one row per
    dataset class + extra rows) with row ``i`` replaced by the checkpoint's row ``rows[i]`` where
    that is not None, and the extra rows taken from the checkpoint. Returns {key: tensor} for
    every key of ``keys`` in both state dicts whose shapes differ only in the first dimension."""
    out: Dict[str, torch.Tensor] = {}
    for key, extra in keys.items():
        if key not in state or key not in fresh:
            continue
        src, dst = state[key], fresh[key].detach().clone()
        if src.shape[1:] != dst.shape[1:]:
            continue
        n_src, n_dst = src.shape[0] - extra, dst.shape[0] - extra
        for i, r in enumerate(rows[:n_dst]):
            if r is not None and r < n_src:
                dst[i] = src[r].to(dst.dtype)
        if extra:
            dst[n_dst:] = src[n_src:].to(dst.dtype)
        out[key] = dst
    return out
