"""The detectron2 this code is tested with, checked when the engine is imported.

detectron2 is not in ``setup.py``'s dependencies (a lab's own build must not be replaced), so pip
cannot check it. The engine uses a few private parts of it (``_evaluate_predictions_on_coco`` with
``cocoeval_fn`` / ``img_ids`` / ``max_dets_per_image``, ``COCOEvaluator(allow_cached_coco=...)``,
``comm.create_local_process_group``): upstream detectron2 reports version 0.6 both for its 2021
release, which lacks them, and for the later main branch that has them, so the check is the version
range and then these parts themselves.
"""
from __future__ import annotations

import inspect
from types import ModuleType
from typing import List, Optional

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import UserError

__all__ = ["DETECTRON2_VERSIONS", "DETECTRON2_TESTED", "Detectron2VersionError", "check_detectron2"]

DETECTRON2_VERSIONS = ">=0.6,<0.8"
"""detectron2 versions the code works with (setup.py and the README state the same)."""
DETECTRON2_TESTED = "sal-detectron2 0.7.2 (upstream detectron2 a59f0563)"
_INSTALL = ("Install the tested one (pip install sal-detectron2==0.7.2, Python 3.10) or build detectron2 from "
            "source at commit a59f0563 or later (pip install 'git+https://github.com/facebookresearch/detectron2.git').")


class Detectron2VersionError(UserError, ImportError):
    """The installed detectron2 is outside the range this code works with."""


def _missing_parts() -> List[str]:
    from detectron2.evaluation import COCOEvaluator
    from detectron2.evaluation import coco_evaluation
    from detectron2.utils import comm

    missing = []
    fn = getattr(coco_evaluation, "_evaluate_predictions_on_coco", None)
    params = inspect.signature(fn).parameters if fn is not None else {}
    for name in ("cocoeval_fn", "img_ids", "max_dets_per_image"):
        if name not in params:
            missing.append(f"_evaluate_predictions_on_coco({name}=...)")
    if "allow_cached_coco" not in inspect.signature(COCOEvaluator.__init__).parameters:
        missing.append("COCOEvaluator(allow_cached_coco=...)")
    if not hasattr(comm, "create_local_process_group"):
        missing.append("comm.create_local_process_group")
    return missing


def check_detectron2(detectron2: Optional[ModuleType] = None) -> None:
    """Raise :class:`Detectron2VersionError` naming the version, its location and what to install
    when ``detectron2`` (default: the installed one) is outside :data:`DETECTRON2_VERSIONS` or
    lacks a part the engine uses."""
    if detectron2 is None:
        import detectron2
    where = getattr(detectron2, "__file__", "?")
    version = str(getattr(detectron2, "__version__", "unknown"))
    try:
        ok = Version(version) in SpecifierSet(DETECTRON2_VERSIONS)
    except InvalidVersion:
        ok = False
    if not ok:
        raise Detectron2VersionError(
            f"detectron2 {version} ({where}) is outside the versions mlla-rtdetr works with "
            f"({DETECTRON2_VERSIONS}; tested: {DETECTRON2_TESTED}). {_INSTALL}")
    missing = _missing_parts()
    if missing:
        raise Detectron2VersionError(
            f"detectron2 {version} ({where}) predates parts mlla-rtdetr uses: {', '.join(missing)} "
            f"(tested: {DETECTRON2_TESTED}). {_INSTALL}")
