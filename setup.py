"""Installs the project code (``projects/mlla_rtdetr``) as the ``mlla_rtdetr`` package.

Two ways to install:
* ``make test`` / ``make demo`` create a Python 3.10 venv with pinned requirements (see README).
* With your own detectron2 (any Python >= 3.10): ``pip install -e .`` keeps it untouched; only the
  light dependencies below are added.
"""
from setuptools import find_packages, setup

PROJECT_DIR = "projects/mlla_rtdetr"

setup(
    name="mlla-rtdetr",
    version="0.1.0",
    description="MLLA (Mamba-Like Linear Attention) in RT-DETR, on detectron2",
    python_requires=">=3.10",
    packages=["mlla_rtdetr"]
    + ["mlla_rtdetr." + p for p in find_packages(PROJECT_DIR, exclude=["configs", "configs.*"])],
    package_dir={"mlla_rtdetr": PROJECT_DIR},
    # detectron2 itself is deliberately not listed: it is not on PyPI under its own name, and a
    # user's own build must not be replaced. requirements.txt pins the registry wheel instead.
    # The ranges the code works with: torch >= 2.4 (torch.amp.GradScaler(device),
    # torch.is_autocast_enabled(device), torch.compiler.is_compiling); tested with torch 2.14.1 /
    # torchvision 0.29.1 and detectron2 0.7.2 (sal-detectron2 wheel = upstream a59f0563). The
    # engine checks the detectron2 range (>=0.6,<0.8, and the private parts it uses) at import.
    install_requires=[
        "torch>=2.4,<2.15",
        "torchvision>=0.19,<0.30",
        "packaging",
        "fvcore",
        "iopath",
        "omegaconf>=2.1",
        "pycocotools",
        "scipy",
        "timm",
        "pillow",
    ],
    extras_require={
        "fast-eval": ["faster-coco-eval"],
        "tools": ["onnx", "onnxruntime", "matplotlib", "tensorboard", "submitit", "av"],
        "figures": ["matplotlib", "faster-coco-eval", "tidecv", "grad-cam"],
        "photos": ["matplotlib", "scikit-learn"],  # the photo-paste dataset's source photographs
    },
)
