"""Models of the official RT-DETR implementation, loaded from a checkout the user points at.

The official code (lyuwenyu/RT-DETR, ``rtdetrv2_pytorch/``) is never part of this repository; the
benchmark tool imports it from ``--official-root`` to time it side by side with ours, in the same
process and call by call. Models are built from their YAML config with the official ``YAMLConfig``
(``src.core``), with random weights: ``pretrained`` backbones are switched off (no download), and
``eval_spatial_size`` is set to the measured input size (the official decoder uses anchors
precomputed for that size in eval mode).

Entry points used (the official ``tools/train.py`` / ``tools/export_onnx.py`` contract)::

    from src.core import YAMLConfig
    cfg = YAMLConfig(path, **overrides); cfg.model; cfg.criterion
    model.deploy()                                  # RepVGG folding, eval mode
    model(images)                                   # eval: {"pred_logits", "pred_boxes"}
    model(images, targets=targets); criterion(outputs, targets, epoch=.., step=.., global_step=..)

``targets`` are ``[{"labels": (n,) int64, "boxes": (n, 4) cxcywh normalized}]``.
"""
from __future__ import annotations

import glob
import importlib
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torchvision.ops import box_convert

from mlla_rtdetr.errors import ConfigError

PACKAGE_DIR = "rtdetrv2_pytorch"
NAME_PREFIX = "official/"


def official_package_dir(root: str) -> str:
    """``root`` is a checkout of lyuwenyu/RT-DETR or its ``rtdetrv2_pytorch`` folder; returns the
    folder holding the official ``src`` package."""
    if not root:
        raise ConfigError("--official-root is required to benchmark an official model "
                          "(a checkout of https://github.com/lyuwenyu/RT-DETR).")
    root = os.path.abspath(os.path.expanduser(root))
    for cand in (os.path.join(root, PACKAGE_DIR), root):
        if os.path.isfile(os.path.join(cand, "src", "core", "__init__.py")):
            return cand
    raise ConfigError(
        f"--official-root {root} holds no {PACKAGE_DIR}/src/core; point it at a checkout of "
        "https://github.com/lyuwenyu/RT-DETR (or at its rtdetrv2_pytorch folder)."
    )


def resolve_official_config(root: str, config: str) -> str:
    """An official YAML config given as a path, a path relative to the package folder, or a bare
    name such as ``rtdetrv2_r18vd_120e_coco`` (searched under ``configs/``)."""
    pkg = official_package_dir(root)
    name = config[len(NAME_PREFIX):] if config.startswith(NAME_PREFIX) else config
    for cand in (name, os.path.join(pkg, name)):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    stem = os.path.splitext(os.path.basename(name))[0]
    found = sorted(glob.glob(os.path.join(pkg, "configs", "**", stem + ".yml"), recursive=True))
    if len(found) == 1:
        return found[0]
    known = sorted(os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob(os.path.join(pkg, "configs", "**", "*.yml"), recursive=True)
                   if "include" not in p.split(os.sep) and "dataset" not in p.split(os.sep))
    if found:
        raise ConfigError(f"Official config '{config}' is ambiguous: {found}; pass its path.")
    raise ConfigError(f"No official config '{config}' under {pkg}/configs. Known: {', '.join(known)}")


def official_name(config_path: str) -> str:
    """The name an official model carries in benchmark tables: ``official/<config stem>``."""
    return NAME_PREFIX + os.path.splitext(os.path.basename(config_path))[0]


def _import_official(pkg: str):
    """Import the official ``src.core`` from ``pkg`` (and nothing else called ``src``)."""
    loaded = sys.modules.get("src")
    if loaded is not None:
        origin = os.path.dirname(os.path.dirname(os.path.abspath(getattr(loaded, "__file__", "") or "")))
        if origin != pkg:
            raise ConfigError(f"A different 'src' package ({loaded.__file__}) is already imported; "
                              f"run one official checkout per process.")
    if pkg not in sys.path:
        sys.path.insert(0, pkg)
    return importlib.import_module("src.core")


def build_official(root: str, config: str, input_size: Optional[Sequence[int]] = None,
                   with_criterion: bool = False) -> "OfficialDetector":
    """The official model (random init, no pretrained download) and, optionally, its criterion,
    as an :class:`OfficialDetector`.

    Args:
        root: the official checkout (see :func:`official_package_dir`).
        config: official config name or path (see :func:`resolve_official_config`).
        input_size: (H, W) of the inputs it will see; sets ``eval_spatial_size``.
    """
    path = resolve_official_config(root, config)
    core = _import_official(official_package_dir(root))
    from src.core.yaml_utils import load_config  # noqa: E402 (the official package, just imported)

    overrides: Dict[str, Any] = {}
    for key, value in load_config(path).items():  # every pretrained backbone: random init instead
        if isinstance(value, dict) and value.get("pretrained"):
            overrides[key] = {"pretrained": False}
    if input_size is not None:
        overrides["eval_spatial_size"] = [int(input_size[0]), int(input_size[-1])]
    cfg = core.YAMLConfig(path, **overrides)
    return OfficialDetector(cfg.model, cfg.criterion if with_criterion else None)


def official_targets(batch: List[Dict[str, Any]]) -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]]]:
    """Our training batch (``list[dict]`` with 0..255 ``image`` and XYXY ``instances``) -> the official
    inputs: images (B, 3, H, W) in [0, 1] and targets with cxcywh boxes normalized by the image size."""
    images = torch.stack([d["image"] for d in batch]) / 255.0
    targets = []
    for d in batch:
        h, w = d["image"].shape[-2:]
        xyxy = d["instances"].gt_boxes.tensor
        boxes = box_convert(xyxy, "xyxy", "cxcywh") / xyxy.new_tensor([w, h, w, h])
        targets.append({"labels": d["instances"].gt_classes.long(), "boxes": boxes})
    return images, targets


class OfficialDetector(nn.Module):
    """An official RT-DETR model (and criterion) behind the part of our detector contract that the
    benchmark uses: ``forward_raw(images)``, ``deploy()``, ``num_classes`` and, in training,
    ``forward(batch) -> loss dict`` on our ``list[dict]`` batches.

    The training forward runs as the official ``det_engine.train_one_epoch``: the model under the
    caller's autocast, the criterion with autocast disabled.
    """

    def __init__(self, model: nn.Module, criterion: Optional[nn.Module] = None):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.num_classes = int(getattr(model.decoder, "num_classes", 80))

    def forward_raw(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.model(images)

    def forward(self, batch: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        if self.criterion is None:
            raise RuntimeError("OfficialDetector was built without its criterion (with_criterion=False).")
        images, targets = official_targets(batch)
        outputs = self.model(images, targets=targets)
        with torch.autocast(images.device.type, enabled=False):
            return self.criterion(outputs, targets, epoch=0, step=0, global_step=0)

    def deploy(self) -> "OfficialDetector":
        self.model.deploy()
        self.eval()
        return self
