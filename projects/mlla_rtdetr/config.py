"""Locating and loading the repository's LazyConfig files.

Recipes import shared pieces the detrex way::

    from mlla_rtdetr.config import get_config
    train = get_config("common/train.py").train
"""
from __future__ import annotations

from pathlib import Path

from detectron2.config import LazyConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMON_CONFIG_DIR = REPO_ROOT / "configs"
PROJECT_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_path(relative: str) -> Path:
    """Absolute path of a config given relative to ``configs/`` (e.g. ``"common/train.py"``)
    or to ``projects/mlla_rtdetr/configs/`` (e.g. ``"rtdetr_r18vd_6x_coco.py"``)."""
    for root in (COMMON_CONFIG_DIR, PROJECT_CONFIG_DIR):
        path = root / relative
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Config '{relative}' not found under {COMMON_CONFIG_DIR} or {PROJECT_CONFIG_DIR}. "
        "The configs live in the source checkout: install the project with `pip install -e .`."
    )


def get_config(relative: str):
    """Load a LazyConfig file by its path relative to ``configs/`` or the project's configs."""
    return LazyConfig.load(str(config_path(relative)))
