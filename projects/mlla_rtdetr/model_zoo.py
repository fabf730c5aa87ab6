"""The official RT-DETR / RT-DETRv2 model zoo: recipe, official weights file and published numbers
of every row of the two papers' tables and the official READMEs.

Used by ``tools/reproduce_table.py`` (evaluates every row whose official checkpoint it finds) and
by the model-zoo README. Published numbers come from lyuwenyu/RT-DETR @ 068dfde:
``rtdetr_pytorch/README.md`` (RT-DETR, PyTorch evaluation), ``rtdetr_paddle/README.md`` (RT-DETR-L /
X, trained and evaluated in Paddle) and ``rtdetrv2_pytorch/README.md`` (RT-DETRv2, the sampling
ablation and the discrete-sampling models). ``gflops`` is the official count: fvcore's
convolution and matrix-product multiply-adds x 2 of the official PyTorch model at 640 x 640
(:func:`mlla_rtdetr.utils.flops.official_gflops` gives the same number for our models).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

__all__ = ["ZooEntry", "MODEL_ZOO", "entries_for_weights", "zoo_entry"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One published row."""

    name: str  # as in the official tables, e.g. "RT-DETRv2-S"
    recipe: str  # projects/mlla_rtdetr/configs/<recipe>.py
    weights: str  # official checkpoint file name
    backbone: str
    ap: float  # published COCO val2017 box AP (640 x 640)
    ap50: float
    params: int  # exact parameter count of the official model
    gflops: float  # official count at 640 (see the module docstring)
    fps_t4: Optional[int] = None  # published T4 TensorRT FP16 FPS
    table: str = "RT-DETRv2"  # which table the row belongs to
    note: str = ""


_URL = "https://github.com/lyuwenyu/storage/releases/download"

MODEL_ZOO: List[ZooEntry] = [
    # RT-DETR (rtdetr_pytorch README; L / X from the Paddle README)
    ZooEntry("RT-DETR-R18", "rtdetr_r18vd_6x_coco", "rtdetr_r18vd_dec3_6x_coco_from_paddle.pth", "ResNet-18-vd",
             46.4, 63.7, 20_184_464, 61.0, 217, "RT-DETR"),
    ZooEntry("RT-DETR-R34", "rtdetr_r34vd_6x_coco", "rtdetr_r34vd_dec4_6x_coco_from_paddle.pth", "ResNet-34-vd",
             48.9, 66.8, 31_441_668, 93.1, 161, "RT-DETR"),
    ZooEntry("RT-DETR-R50-m", "rtdetr_r50vd_m_6x_coco", "rtdetr_r50vd_m_6x_coco_from_paddle.pth", "ResNet-50-vd",
             51.3, 69.5, 36_593_772, 100.2, 145, "RT-DETR"),
    ZooEntry("RT-DETR-R50", "rtdetr_r50vd_6x_coco", "rtdetr_r50vd_6x_coco_from_paddle.pth", "ResNet-50-vd",
             53.1, 71.2, 42_891_372, 137.1, 108, "RT-DETR"),
    ZooEntry("RT-DETR-R101", "rtdetr_r101vd_6x_coco", "rtdetr_r101vd_6x_coco_from_paddle.pth", "ResNet-101-vd",
             54.3, 72.8, 76_556_268, 259.8, 74, "RT-DETR"),
    ZooEntry("RT-DETR-L", "rtdetr_hgnetv2_l_6x_coco", "rtdetrv2_hgnetv2_l_6x_coco_from_paddle.pth", "HGNetv2-L",
             53.0, 71.6, 32_925_036, 111.0, 114, "RT-DETR",
             "Paddle AP; the PyTorch weights are the Paddle model converted (v2 README: 52.9)"),
    ZooEntry("RT-DETR-X", "rtdetr_hgnetv2_x_6x_coco", "rtdetrv2_hgnetv2_x_6x_coco_from_paddle.pth", "HGNetv2-X",
             54.8, 73.1, 67_374_188, 235.2, 74, "RT-DETR",
             "Paddle AP; the PyTorch weights are the Paddle model converted (v2 README: 54.7)"),
    # RT-DETRv2 (rtdetrv2_pytorch README)
    ZooEntry("RT-DETRv2-S", "rtdetrv2_r18vd_120e_coco", "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth", "ResNet-18-vd",
             48.1, 65.1, 20_184_464, 61.0, 217),
    ZooEntry("RT-DETRv2-M*", "rtdetrv2_r34vd_120e_coco", "rtdetrv2_r34vd_120e_coco_ema.pth", "ResNet-34-vd",
             49.9, 67.5, 31_441_668, 93.1, 161),
    ZooEntry("RT-DETRv2-M", "rtdetrv2_r50vd_m_7x_coco", "rtdetrv2_r50vd_m_7x_coco_ema.pth", "ResNet-50-vd",
             51.9, 69.9, 36_593_772, 100.2, 145),
    ZooEntry("RT-DETRv2-L", "rtdetrv2_r50vd_6x_coco", "rtdetrv2_r50vd_6x_coco_ema.pth", "ResNet-50-vd",
             53.4, 71.6, 42_891_372, 137.1, 108),
    ZooEntry("RT-DETRv2-X", "rtdetrv2_r101vd_6x_coco", "rtdetrv2_r101vd_6x_coco_from_paddle.pth", "ResNet-101-vd",
             54.3, 72.8, 76_556_268, 259.8, 74),
    ZooEntry("RT-DETRv2-HGNetv2-L", "rtdetrv2_hgnetv2_l_6x_coco", "rtdetrv2_hgnetv2_l_6x_coco_from_paddle.pth",
             "HGNetv2-L", 52.9, 71.5, 32_925_036, 111.0, 114),
    ZooEntry("RT-DETRv2-HGNetv2-X", "rtdetrv2_hgnetv2_x_6x_coco", "rtdetrv2_hgnetv2_x_6x_coco_from_paddle.pth",
             "HGNetv2-X", 54.7, 72.9, 67_374_188, 235.2, 74),
    ZooEntry("RT-DETRv2-HGNetv2-H", "rtdetrv2_hgnetv2_h_6x_coco", "rtdetrv2_hgnetv2_h_6x_coco_from_paddle.pth",
             "HGNetv2-H", 56.3, 74.8, 125_584_348, 491.3, 40),
]


def zoo_entry(recipe: str) -> ZooEntry:
    """The row of ``recipe`` (its name without ``.py``)."""
    for entry in MODEL_ZOO:
        if entry.recipe == recipe:
            return entry
    raise KeyError(f"No model-zoo row for recipe '{recipe}'; rows: {[e.recipe for e in MODEL_ZOO]}.")


def entries_for_weights() -> Dict[str, List[ZooEntry]]:
    """Official file name -> the rows it is the checkpoint of (the converted Paddle RT-DETR-L / X
    weights serve the RT-DETR and the RT-DETRv2 rows)."""
    out: Dict[str, List[ZooEntry]] = {}
    for entry in MODEL_ZOO:
        out.setdefault(entry.weights, []).append(entry)
    return out


def download_url(entry: ZooEntry) -> str:
    """Where the official file is published (``rtdetrv2_r18vd_120e_coco_rerun_48.1.pth`` is under
    ``v0.2``, every other file under ``v0.1``)."""
    version = "v0.2" if entry.weights == "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth" else "v0.1"
    return f"{_URL}/{version}/{entry.weights}"
