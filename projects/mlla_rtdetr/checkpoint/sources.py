"""Where a checkpoint comes from: a local file, a URL, or the name of an official checkpoint.

Names (case-insensitive) of :func:`official_checkpoints`:

* every model-zoo row (:mod:`mlla_rtdetr.model_zoo`): its official file name, with or without
  ``.pth`` (``rtdetrv2_r18vd_120e_coco_rerun_48.1``; a file of that name in the working directory wins), its table name (``RT-DETRv2-S``) and, for the COCO
  row of a recipe, the recipe name (``rtdetrv2_r18vd_120e_coco``);
* the official ImageNet backbones: ``ResNet18_vd_pretrained_from_paddle`` ...,
  ``PPHGNetV2_L_ssld_pretrained_from_paddle`` ... and the MLLA ones, ``mlla_t_in1k`` /
  ``mlla_s_in1k`` / ``mlla_b_in1k`` (also ``MLLA_T`` ...).

URLs and names are downloaded once into ``<cache_dir>/checkpoints/<file name>``; a file already
there is used as it is, so a machine without network only needs the file copied to that path (the
error message says which). The DEIM checkpoints are on Google Drive only: their names resolve to
that path too, and while the file is not there the error names the page to download it from.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, Optional, Tuple

from .. import model_zoo
from ..errors import CheckpointError, PathNotFoundError

__all__ = ["CheckpointDownloadError", "is_url", "official_checkpoints", "cached_checkpoint_path",
           "resolve_checkpoint", "download"]

#: Replaced in tests (``file://`` URLs need no replacement).
urlopen = urllib.request.urlopen


class CheckpointDownloadError(CheckpointError):
    """A checkpoint URL could not be downloaded; the message says where to put the file by hand."""


def is_url(path: str) -> bool:
    """True for ``https://...`` (and other ``scheme://``) checkpoint locations."""
    return "://" in str(path)


def _zoo_source(entry: model_zoo.ZooEntry) -> Tuple[str, Optional[str]]:
    """(file name, URL) of a model-zoo row; the URL is None for a file without a direct download."""
    return entry.weights, None if entry.manual_download_page else model_zoo.download_url(entry)


def official_checkpoints() -> Dict[str, Tuple[str, Optional[str]]]:
    """Lower-case name -> (file name, URL) of every official checkpoint known by name (URL None: a
    file published without a direct download, see :func:`mlla_rtdetr.model_zoo.download_url`)."""
    out: Dict[str, Tuple[str, Optional[str]]] = {}
    for entry in model_zoo.MODEL_ZOO:
        source = _zoo_source(entry)
        out.setdefault(entry.weights[: -len(".pth")].lower(), source)
        out.setdefault(entry.name.lower(), source)
        if entry.table != "COCO + Objects365":
            out.setdefault(entry.recipe.lower(), _zoo_source(model_zoo.zoo_entry(entry.recipe)))
    for weights in model_zoo.IMAGENET_WEIGHTS.values():
        out.setdefault(weights[: -len(".pth")].lower(), (weights, model_zoo.imagenet_url(weights)))
    for variant, (weights, url) in model_zoo.MLLA_IMAGENET_WEIGHTS.items():
        out[variant.replace("-", "_").lower() + "_in1k"] = (weights, url)
        out[weights[: -len(".pth")].lower()] = (weights, url)
    return out


def _file_name_of(url: str) -> str:
    """The cache file name of ``url``: the official name when the URL is a known one, else the
    last path component, else a name derived from the URL."""
    for weights, known in official_checkpoints().values():
        if known == url:
            return weights
    name = os.path.basename(urllib.parse.urlparse(url).path.rstrip("/"))
    if name.endswith((".pth", ".pt", ".pkl", ".bin")):
        return name
    return f"checkpoint_{hashlib.sha256(url.encode()).hexdigest()[:12]}.pth"


def cached_checkpoint_path(file_name: str, cache_dir: os.PathLike) -> Path:
    """Where a downloaded checkpoint lives: ``<cache_dir>/checkpoints/<file_name>``."""
    return Path(cache_dir) / "checkpoints" / file_name


def resolve_checkpoint(spec: str, cache_dir: os.PathLike) -> str:
    """A local file for ``spec``: ``spec`` itself when it is a file, else the cached download of a
    URL or of an official checkpoint's name (downloaded first if absent). A spec that is none of
    these raises :class:`PathNotFoundError` (naming the closest official names when it looks like
    one); a failed download :class:`CheckpointDownloadError`."""
    spec = str(spec)
    if os.path.isfile(spec):
        return spec
    official = official_checkpoints()
    name = spec.lower()[: -len(".pth")] if spec.lower().endswith(".pth") and os.sep not in spec else spec.lower()
    if is_url(spec):
        url, file_name = spec, _file_name_of(spec)
    elif name in official:
        file_name, url = official[name]
    else:
        message = f"Checkpoint '{spec}' does not exist."
        if os.sep not in spec and not spec.endswith(".pth"):
            close = difflib.get_close_matches(spec.lower(), list(official), n=3, cutoff=0.6)
            message += (" It is not the name of an official checkpoint either"
                        + (f"; did you mean {' or '.join(close)}?" if close else
                           " (model-zoo rows such as rtdetrv2_r18vd_120e_coco, ImageNet backbones such as "
                           "mlla_t_in1k; see projects/mlla_rtdetr/README.md)."))
        raise PathNotFoundError(message)
    path = cached_checkpoint_path(file_name, cache_dir)
    if not path.is_file():
        if url is None:
            raise model_zoo.manual_download_error(model_zoo.entries_for_weights()[file_name][0], str(path))
        download(url, path)
    return str(path)


def download(url: str, path: os.PathLike) -> None:
    """Download ``url`` to ``path`` through a temporary file (never a partial file at ``path``)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)
        os.replace(tmp, path)
    except Exception as e:  # URLError, timeouts, HTTP errors, disk errors: one message with the way out
        raise CheckpointDownloadError(
            f"Could not download the checkpoint {url}: {e}\n"
            f"Without network access, download it on another machine and put it at\n  {path}\n"
            "then run the same command again (or pass the file's own path as the checkpoint)."
        ) from e
    finally:
        if tmp.exists():
            tmp.unlink()
