"""Test-session settings shared by every test file.

* ``parity_state`` (the fixture recipe copied from ../shared/parity) is importable.
* The embedded dataset is generated once per checkout into ``.cache/`` (git-ignored), so tests never
  touch the user's home cache; set ``MLLA_RTDETR_CACHE`` to override.
* Float32 determinism: TF32 off where a GPU exists.
* Tests marked ``cuda`` are skipped when no CUDA device is available.
"""
import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = REPO_ROOT / "tests" / "fixtures" / "parity"
sys.path.insert(0, str(PARITY_DIR))
os.environ.setdefault("MLLA_RTDETR_CACHE", str(REPO_ROOT / ".cache" / "tests"))

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY_DIR
