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
from typing import Dict, List, Optional, Tuple

__all__ = ["ZooEntry", "MODEL_ZOO", "IMAGENET_WEIGHTS", "MLLA_IMAGENET_WEIGHTS", "entries_for_weights", "zoo_entry",
           "download_url", "imagenet_url"]

#: Backbone -> the ImageNet file its official recipes start from (official ``presnet.py`` /
#: ``hgnetv2.py``; R50-m uses the R50 file). Our recipes take it as ``train.init_checkpoint``.
IMAGENET_WEIGHTS: Dict[str, str] = {
    "ResNet-18-vd": "ResNet18_vd_pretrained_from_paddle.pth",
    "ResNet-34-vd": "ResNet34_vd_pretrained_from_paddle.pth",
    "ResNet-50-vd": "ResNet50_vd_ssld_v2_pretrained_from_paddle.pth",
    "ResNet-101-vd": "ResNet101_vd_ssld_pretrained_from_paddle.pth",
    "HGNetv2-L": "PPHGNetV2_L_ssld_pretrained_from_paddle.pth",
    "HGNetv2-X": "PPHGNetV2_X_ssld_pretrained_from_paddle.pth",
    "HGNetv2-H": "PPHGNetV2_H_ssld_pretrained_from_paddle.pth",
}

#: MLLA variant -> (file name, URL) of the official ImageNet-1k checkpoints (LeapLabTHU/MLLA README,
#: "Pretrained Models"; hosted on Tsinghua Cloud). The MLLA recipes start their backbone from these.
MLLA_IMAGENET_WEIGHTS: Dict[str, Tuple[str, str]] = {
    "MLLA-T": ("MLLA_T.pth", "https://cloud.tsinghua.edu.cn/f/7a19712877cb4242889c/?dl=1"),
    "MLLA-S": ("MLLA_S.pth", "https://cloud.tsinghua.edu.cn/f/0e5d0b1409d540aaa80c/?dl=1"),
    "MLLA-B": ("MLLA_B.pth", "https://cloud.tsinghua.edu.cn/f/91c85c5a1061496d8796/?dl=1"),
}


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

    @property
    def key(self) -> str:
        """Unique row id: the table and the checkpoint's file stem (one file may serve two rows)."""
        return f"{self.recipe}@{self.weights[:-4]}"

    @property
    def train_init(self) -> Optional[str]:
        """What training this row starts from, as ``train.init_checkpoint``: the backbone's ImageNet
        file; ``None`` where the recipe names its own start (the discrete-sampling fine-tunes) or
        the row was pre-trained on Objects365 (not a recipe here)."""
        if self.table == "COCO + Objects365" or "_dsp_" in self.recipe:
            return None
        return IMAGENET_WEIGHTS[self.backbone]


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
    # RT-DETRv2 sampling ablation (grid sampling, points per level) and discrete sampling
    ZooEntry("RT-DETRv2-S sp1", "rtdetrv2_r18vd_sp1_120e_coco", "rtdetrv2_r18vd_sp1_120e_coco.pth", "ResNet-18-vd",
             47.3, 64.3, 20_017_928, 60.9, None, "RT-DETRv2 sampling", "1 sampling point per level (21,600)"),
    ZooEntry("RT-DETRv2-S sp2", "rtdetrv2_r18vd_sp2_120e_coco", "rtdetrv2_r18vd_sp2_120e_coco.pth", "ResNet-18-vd",
             47.7, 64.7, 20_073_440, 61.0, None, "RT-DETRv2 sampling", "2 sampling points per level (43,200)"),
    ZooEntry("RT-DETRv2-S sp3", "rtdetrv2_r18vd_sp3_120e_coco", "rtdetrv2_r18vd_sp3_120e_coco.pth", "ResNet-18-vd",
             47.8, 64.8, 20_128_952, 61.0, None, "RT-DETRv2 sampling", "3 sampling points per level (64,800)"),
    ZooEntry("RT-DETRv2-S sp4", "rtdetrv2_r18vd_120e_coco", "rtdetrv2_r18vd_120e_coco.pth", "ResNet-18-vd",
             47.9, 64.9, 20_184_464, 61.0, None, "RT-DETRv2 sampling",
             "4 points per level (86,400): the first R18 run; the model-zoo R18 is the 48.1 rerun"),
    ZooEntry("RT-DETRv2-S dsp", "rtdetrv2_r18vd_dsp_3x_coco", "rtdetrv2_r18vd_dsp_3x_coco.pth", "ResNet-18-vd",
             47.4, 64.8, 20_184_464, 61.0, None, "RT-DETRv2 sampling", "discrete sampling"),
    ZooEntry("RT-DETRv2-M* dsp", "rtdetrv2_r34vd_dsp_1x_coco", "rrtdetrv2_r34vd_dsp_1x_coco.pth", "ResNet-34-vd",
             49.2, 67.1, 31_441_668, 93.1, None, "RT-DETRv2 sampling",
             "discrete sampling; the official file name starts with 'rr'"),
    ZooEntry("RT-DETRv2-M dsp", "rtdetrv2_r50vd_m_dsp_3x_coco", "rtdetrv2_r50vd_m_dsp_3x_coco.pth", "ResNet-50-vd",
             51.4, 69.7, 36_593_772, 100.2, None, "RT-DETRv2 sampling", "discrete sampling"),
    ZooEntry("RT-DETRv2-L dsp", "rtdetrv2_r50vd_dsp_1x_coco", "rtdetrv2_r50vd_dsp_1x_coco.pth", "ResNet-50-vd",
             52.9, 71.3, 42_891_372, 137.1, None, "RT-DETRv2 sampling", "discrete sampling"),
    # Objects365 pre-training, COCO fine-tuning (same architectures; evaluated with the COCO recipes)
    ZooEntry("RT-DETR-R18 (O365)", "rtdetr_r18vd_6x_coco", "rtdetr_r18vd_5x_coco_objects365_from_paddle.pth",
             "ResNet-18-vd", 49.0, 66.5, 20_184_464, 61.0, 217, "COCO + Objects365"),
    ZooEntry("RT-DETR-R50 (O365)", "rtdetr_r50vd_6x_coco", "rtdetr_r50vd_2x_coco_objects365_from_paddle.pth",
             "ResNet-50-vd", 55.2, 73.4, 42_891_372, 137.1, 108, "COCO + Objects365"),
    ZooEntry("RT-DETR-R101 (O365)", "rtdetr_r101vd_6x_coco", "rtdetr_r101vd_2x_coco_objects365_from_paddle.pth",
             "ResNet-101-vd", 56.2, 74.5, 76_556_268, 259.8, 74, "COCO + Objects365"),
    ZooEntry("RT-DETRv2-S (O365)", "rtdetrv2_r18vd_120e_coco", "rtdetrv2_r18vd_5x_coco_objects365_from_paddle.pth",
             "ResNet-18-vd", 49.0, 66.5, 20_184_464, 61.0, 217, "COCO + Objects365"),
    ZooEntry("RT-DETRv2-L (O365)", "rtdetrv2_r50vd_6x_coco", "rtdetrv2_r50vd_2x_coco_objects365_from_paddle.pth",
             "ResNet-50-vd", 55.2, 73.4, 42_891_372, 137.1, 108, "COCO + Objects365"),
    ZooEntry("RT-DETRv2-X (O365)", "rtdetrv2_r101vd_6x_coco", "rtdetrv2_r101vd_2x_coco_objects365_from_paddle.pth",
             "ResNet-101-vd", 56.2, 74.5, 76_556_268, 259.8, 74, "COCO + Objects365"),
]


def zoo_entry(recipe: str, weights: Optional[str] = None) -> ZooEntry:
    """The COCO row of ``recipe`` (its name without ``.py``), or the row of ``recipe`` and the
    official file ``weights`` (a recipe serves several rows: other sampling runs, Objects365)."""
    for entry in MODEL_ZOO:
        if entry.recipe == recipe and (weights == entry.weights if weights else entry.table != "COCO + Objects365"):
            return entry
    raise KeyError(f"No model-zoo row for recipe '{recipe}'" + (f" and '{weights}'" if weights else "") + ".")


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


def imagenet_url(weights: str) -> str:
    """Where an official ImageNet backbone file of :data:`IMAGENET_WEIGHTS` is published."""
    return f"{_URL}/v0.1/{weights}"
