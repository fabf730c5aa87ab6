"""Checkpoint files: the one reader (weights-only unless the caller opts out) and atomic writers.

Every checkpoint in the project is read by :func:`read_checkpoint_file`: training checkpoints,
``train.init_checkpoint``, the converter tools. It has one set of errors:

* :class:`~mlla_rtdetr.errors.PathNotFoundError` when the file does not exist,
* :class:`~mlla_rtdetr.errors.CheckpointError` when it is unreadable (truncated, empty, not
  written by ``torch.save``) or, with ``weights_only=True`` (the default), holds more than tensors
  and primitive values; the message names the way out (the converter tools' ``--unsafe-load``,
  which is the only place that passes ``weights_only=False``).

Writers go through a temporary file and ``os.replace``, so a crash never leaves a truncated file.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from ..errors import CheckpointError, PathNotFoundError

__all__ = ["read_checkpoint_file", "atomic_torch_save", "atomic_write_text"]

_TORCH_FILE_HEADS = (b"PK", b"\x80\x02")  # torch.save's zip archive; the legacy pickle format


def read_checkpoint_file(path: Union[str, Path], weights_only: bool = True) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=weights_only)`` with the errors above."""
    path = str(path)
    if not os.path.isfile(path):
        raise PathNotFoundError(f"Checkpoint '{path}' does not exist.")
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if not weights_only or "weights only" not in str(e).lower() or head not in _TORCH_FILE_HEADS:
            raise _unreadable(path, e) from e
        raise CheckpointError(
            f"Could not read '{path}' with torch.load(weights_only=True): {str(e).splitlines()[0]}\n"
            "The file holds more than tensors and primitive values. If you trust it, convert it "
            "first (tools/convert_rtdetr_checkpoint.py --unsafe-load, "
            "tools/convert_mlla_checkpoint.py --unsafe-load) and pass the converted file."
        ) from e
    except Exception as e:  # torch.load reports a damaged file in many ways
        raise _unreadable(path, e) from e


def _unreadable(path: str, error: Exception) -> CheckpointError:
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return CheckpointError(
        f"Checkpoint '{path}' cannot be read: {os.path.getsize(path)} bytes that torch.load does "
        f"not understand ({detail}). The file is truncated, empty or not a checkpoint "
        "written by torch.save; copy it again or point to another one."
    )


def _atomic_write(path: str, mode: str, write) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder."""
    _atomic_write(path, "wb", lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    _atomic_write(path, "w", lambda f: f.write(text))
