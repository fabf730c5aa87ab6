"""The official RT-DETR / RT-DETRv2 / D-FINE / DEIM model zoo: recipe, official weights file and
published numbers of every row of the papers' tables and the official READMEs.

Used by ``tools/reproduce_table.py`` (evaluates every row whose official checkpoint it finds) and
by the model-zoo README. Published numbers come from lyuwenyu/RT-DETR @ 068dfde:
``rtdetr_pytorch/README.md`` (RT-DETR, PyTorch evaluation), ``rtdetr_paddle/README.md`` (RT-DETR-L /
X, trained and evaluated in Paddle) and ``rtdetrv2_pytorch/README.md`` (RT-DETRv2, the sampling
ablation and the discrete-sampling models). ``gflops`` is the official count: fvcore's
convolution and matrix-product multiply-adds x 2 of the official PyTorch model at 640 x 640
(:func:`mlla_rtdetr.utils.flops.official_gflops` gives the same number for our models).

The D-FINE, DEIM-D-FINE and DEIM-RT-DETRv2 rows come from ShihuaHuang95/DEIM @ a9aa4ad
(``README.md``: AP of both families, params rounded to M, T4 TensorRT FP16 latency, GFLOPs; no AP50)
and, for the D-FINE checkpoints, Peterande/D-FINE's README (``dfine_{n,s,m,l,x}_coco.pth`` under
its ``dfinev1.0`` release). Their ``gflops`` are the DEIM README's integers, which are ``calflops``
counts of the deployed official models (RepVGG branches fused; normalization and activations
counted too): ``official_gflops`` of our models differs from them by up to a few GFLOPs (see the
model-zoo README). The DEIM checkpoints are published on Google Drive only: :func:`download_url`
raises :class:`ManualDownloadError` naming the page to download them from by hand.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from .errors import CheckpointError

__all__ = ["ZooEntry", "MODEL_ZOO", "IMAGENET_WEIGHTS", "MLLA_IMAGENET_WEIGHTS", "ManualDownloadError",
           "entries_for_weights", "zoo_entry", "download_url", "manual_download_error", "imagenet_url"]

#: Backbone -> the ImageNet file its official recipes start from (official ``presnet.py`` /
#: ``hgnetv2.py``; R50-m uses the R50 file; D-FINE's HGNetv2 B0-B6: its ``hgnetv2.py``
#: ``stage1`` files). Our recipes take it as ``train.init_checkpoint``.
IMAGENET_WEIGHTS: Dict[str, str] = {
    "ResNet-18-vd": "ResNet18_vd_pretrained_from_paddle.pth",
    "ResNet-34-vd": "ResNet34_vd_pretrained_from_paddle.pth",
    "ResNet-50-vd": "ResNet50_vd_ssld_v2_pretrained_from_paddle.pth",
    "ResNet-101-vd": "ResNet101_vd_ssld_pretrained_from_paddle.pth",
    "HGNetv2-L": "PPHGNetV2_L_ssld_pretrained_from_paddle.pth",
    "HGNetv2-X": "PPHGNetV2_X_ssld_pretrained_from_paddle.pth",
    "HGNetv2-H": "PPHGNetV2_H_ssld_pretrained_from_paddle.pth",
    **{f"HGNetv2-B{i}": f"PPHGNetV2_B{i}_stage1.pth" for i in range(7)},
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
    ap50: Optional[float]  # None where the source publishes none (DEIM README)
    params: int  # exact parameter count of the official model
    gflops: float  # official count at 640 (see the module docstring)
    fps_t4: Optional[int] = None  # published T4 TensorRT FP16 FPS
    table: str = "RT-DETRv2"  # which table the row belongs to
    note: str = ""
    latency_t4_ms: Optional[float] = None  # published T4 TensorRT FP16 latency (DEIM README)
    # The page of a checkpoint published without a direct download (DEIM: Google Drive).
    manual_download_page: Optional[str] = None

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
_DFINE_URL = "https://github.com/Peterande/storage/releases/download/dfinev1.0"
_DRIVE = "https://drive.google.com/file/d/{}/view"
_DEIM_NOTE = "checkpoint on Google Drive only (DEIM README)"
_DFINE_NOTE = "AP of DEIM's D-FINE run (DEIM README); the checkpoint is D-FINE's own release"

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
    # D-FINE (HGNetv2), AP as the DEIM README gives it; checkpoints of the Peterande/D-FINE README
    ZooEntry("D-FINE-N", "dfine_hgnetv2_n_coco", "dfine_n_coco.pth", "HGNetv2-B0",
             42.8, None, 3_782_693, 7.0, None, "D-FINE", _DFINE_NOTE, 2.12),
    ZooEntry("D-FINE-S", "dfine_hgnetv2_s_coco", "dfine_s_coco.pth", "HGNetv2-B0",
             48.7, None, 10_321_877, 25.0, None, "D-FINE", _DFINE_NOTE + " (its README: 48.5)", 3.49),
    ZooEntry("D-FINE-M", "dfine_hgnetv2_m_coco", "dfine_m_coco.pth", "HGNetv2-B2",
             52.3, None, 19_590_064, 57.0, None, "D-FINE", _DFINE_NOTE, 5.62),
    ZooEntry("D-FINE-L", "dfine_hgnetv2_l_coco", "dfine_l_coco.pth", "HGNetv2-B4",
             54.0, None, 31_244_152, 91.0, None, "D-FINE", _DFINE_NOTE, 8.07),
    ZooEntry("D-FINE-X", "dfine_hgnetv2_x_coco", "dfine_x_coco.pth", "HGNetv2-B5",
             55.8, None, 62_621_560, 202.0, None, "D-FINE", _DFINE_NOTE, 12.89),
    # DEIM-D-FINE (DEIM README)
    ZooEntry("DEIM-D-FINE-N", "deim_dfine_hgnetv2_n_coco", "deim_dfine_hgnetv2_n_coco_160e.pth", "HGNetv2-B0",
             43.0, None, 3_782_693, 7.0, None, "DEIM-D-FINE", _DEIM_NOTE, 2.12,
             _DRIVE.format("1ZPEhiU9nhW4M5jLnYOFwTSLQC1Ugf62e")),
    ZooEntry("DEIM-D-FINE-S", "deim_dfine_hgnetv2_s_coco", "deim_dfine_hgnetv2_s_coco_120e.pth", "HGNetv2-B0",
             49.0, None, 10_321_877, 25.0, None, "DEIM-D-FINE", _DEIM_NOTE, 3.49,
             _DRIVE.format("1tB8gVJNrfb6dhFvoHJECKOF5VpkthhfC")),
    ZooEntry("DEIM-D-FINE-M", "deim_dfine_hgnetv2_m_coco", "deim_dfine_hgnetv2_m_coco_90e.pth", "HGNetv2-B2",
             52.7, None, 19_590_064, 57.0, None, "DEIM-D-FINE", _DEIM_NOTE, 5.62,
             _DRIVE.format("18Lj2a6UN6k_n_UzqnJyiaiLGpDzQQit8")),
    ZooEntry("DEIM-D-FINE-L", "deim_dfine_hgnetv2_l_coco", "deim_dfine_hgnetv2_l_coco_50e.pth", "HGNetv2-B4",
             54.7, None, 31_289_848, 91.0, None, "DEIM-D-FINE", _DEIM_NOTE, 8.07,
             _DRIVE.format("1PIRf02XkrA2xAD3wEiKE2FaamZgSGTAr")),
    ZooEntry("DEIM-D-FINE-X", "deim_dfine_hgnetv2_x_coco", "deim_dfine_hgnetv2_x_coco_50e.pth", "HGNetv2-B5",
             56.5, None, 62_715_480, 202.0, None, "DEIM-D-FINE", _DEIM_NOTE, 12.89,
             _DRIVE.format("1dPtbgtGgq1Oa7k_LgH1GXPelg1IVeu0j")),
    # DEIM-RT-DETRv2 (DEIM README; its M is R34 and M* R50-m, the reverse of the RT-DETRv2 names)
    ZooEntry("DEIM-RT-DETRv2-S", "deim_rtdetrv2_r18vd_120e_coco", "deim_rtdetrv2_r18vd_coco_120e.pth", "ResNet-18-vd",
             49.0, None, 20_183_440, 60.0, None, "DEIM-RT-DETRv2", _DEIM_NOTE, 4.59,
             _DRIVE.format("153_JKff6EpFgiLKaqkJsoDcLal_0ux_F")),
    ZooEntry("DEIM-RT-DETRv2-M", "deim_rtdetrv2_r34vd_120e_coco", "deim_rtdetrv2_r34vd_coco_120e.pth", "ResNet-34-vd",
             50.9, None, 31_440_644, 92.0, None, "DEIM-RT-DETRv2", _DEIM_NOTE, 6.40,
             _DRIVE.format("1O9RjZF6kdFWGv1Etn1Toml4r-YfdMDMM")),
    ZooEntry("DEIM-RT-DETRv2-M*", "deim_rtdetrv2_r50vd_m_60e_coco", "deim_rtdetrv2_r50vd_m_coco_60e.pth",
             "ResNet-50-vd", 53.2, None, 33_198_864, 100.0, None, "DEIM-RT-DETRv2", _DEIM_NOTE, 6.90,
             _DRIVE.format("10dLuqdBZ6H5ip9BbBiE6S7ZcmHkRbD0E")),
    ZooEntry("DEIM-RT-DETRv2-L", "deim_rtdetrv2_r50vd_60e_coco", "deim_rtdetrv2_r50vd_coco_60e.pth", "ResNet-50-vd",
             54.3, None, 42_943_596, 136.0, None, "DEIM-RT-DETRv2", _DEIM_NOTE, 9.15,
             _DRIVE.format("1mWknAXD5JYknUQ94WCEvPfXz13jcNOTI")),
    ZooEntry("DEIM-RT-DETRv2-X", "deim_rtdetrv2_r101vd_60e_coco", "deim_rtdetrv2_r101vd_coco_60e.pth",
             "ResNet-101-vd", 55.5, None, 76_660_716, 259.0, None, "DEIM-RT-DETRv2", _DEIM_NOTE, 13.66,
             _DRIVE.format("1BIevZijOcBO17llTyDX32F_pYppBfnzu")),
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


class ManualDownloadError(CheckpointError):
    """An official checkpoint without a direct download (DEIM's Google Drive files) is not on disk."""


def manual_download_error(entry: ZooEntry, path: Optional[str] = None) -> ManualDownloadError:
    """The error that tells how to get ``entry``'s file by hand (and where to put it: ``path``)."""
    put = (f"put it at\n  {path}\nand run the same command again, or pass the file's own path as the checkpoint"
           if path else "pass the file's path as the checkpoint (e.g. train.init_checkpoint=weights/"
           f"{entry.weights})")
    return ManualDownloadError(
        f"The official {entry.name} checkpoint {entry.weights} has no direct download: its authors publish it on "
        f"Google Drive only. Download it in a browser from\n  {entry.manual_download_page}\n"
        f"(the DEIM README's '{entry.table}' table), then {put}."
    )


def download_url(entry: ZooEntry) -> str:
    """Where the official file is published (RT-DETR: ``rtdetrv2_r18vd_120e_coco_rerun_48.1.pth`` is
    under ``v0.2``, every other file under ``v0.1``; D-FINE: its ``dfinev1.0`` release). Raises
    :class:`ManualDownloadError` for a file published on Google Drive only (the DEIM rows)."""
    if entry.manual_download_page:
        raise manual_download_error(entry)
    if entry.table == "D-FINE":
        return f"{_DFINE_URL}/{entry.weights}"
    version = "v0.2" if entry.weights == "rtdetrv2_r18vd_120e_coco_rerun_48.1.pth" else "v0.1"
    return f"{_URL}/{version}/{entry.weights}"


def imagenet_url(weights: str) -> str:
    """Where an official ImageNet backbone file of :data:`IMAGENET_WEIGHTS` is published (D-FINE's
    HGNetv2 B0-B6 under its ``dfinev1.0`` release, the RT-DETR ones under ``v0.1``)."""
    if weights.endswith("_stage1.pth"):
        return f"{_DFINE_URL}/{weights}"
    return f"{_URL}/v0.1/{weights}"
