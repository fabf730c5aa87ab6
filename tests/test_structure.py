"""The package's layers point down only, and configs are found by name.

Layers, lowest first: ``errors`` -> ``config``, ``model_zoo`` (the official rows' metadata),
``modeling.layers`` -> ``modeling`` -> ``data``,
``checkpoint`` (checkpoint files and formats; the training checkpointer is ``engine.checkpointer``)
-> ``engine`` -> ``launch``, ``utils`` (tools support) -> ``sweep`` -> ``tools/``.
A module imports from lower layers and from its own package only: the launcher runs a job
without knowing sweeps (a sweep hands it a status callback), sweeps launch through it.
"""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlla_rtdetr.config import ConfigNotFoundError, config_path, get_config
from mlla_rtdetr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "projects" / "mlla_rtdetr"

LAYERS = {
    "errors": 0,
    "config": 1,
    "model_zoo": 1,
    "modeling.layers": 1,
    "modeling": 2,
    "data": 3,
    "checkpoint": 3,
    "engine": 4,
    "launch": 5,
    "utils": 5,
    "sweep": 6,
}
TOP = max(LAYERS.values())


def _package_of(module: str) -> str:
    """``mlla_rtdetr.modeling.layers.conv`` -> ``modeling.layers``; ``mlla_rtdetr.engine.x`` -> ``engine``."""
    parts = module.split(".")[1:]
    if parts[:2] == ["modeling", "layers"]:
        return "modeling.layers"
    return parts[0] if parts else ""


def _imports(path: Path):
    """(line, absolute module) of every project import in ``path``, also inside functions."""
    package = ["mlla_rtdetr"] + list(path.relative_to(PACKAGE).parent.parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("mlla_rtdetr"):
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mlla_rtdetr"):
                    yield node.lineno, alias.name


def test_every_import_points_down():
    files = [p for p in PACKAGE.rglob("*.py") if "configs" not in p.relative_to(PACKAGE).parts]
    assert len(files) > 50
    wrong = []
    for path in files:
        source = _package_of("mlla_rtdetr." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if source in ("", "__init__"):
            continue
        assert source in LAYERS, f"{path}: package '{source}' has no layer in this test"
        for line, target in _imports(path):
            dest = _package_of(target)
            if dest == source or dest == "":
                continue
            if LAYERS[dest] < LAYERS[source] or LAYERS[source] == LAYERS[dest] == TOP:
                continue
            wrong.append(f"{path.relative_to(REPO)}:{line} ({source}) imports {target} ({dest})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


BLOCKED_IMPORT = textwrap.dedent('''
    import importlib.abc, os, sys, types
    target, allowed = sys.argv[1], sys.argv[2].split(",")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.startswith("mlla_rtdetr.") and not any(
                    name == a or name.startswith(a + ".") for a in ["mlla_rtdetr." + a for a in allowed]):
                raise ImportError(f"blocked: {name}")
            return None

    import mlla_rtdetr
    if target == "mlla_rtdetr.modeling.layers":  # its package __init__ imports the whole of modeling
        stub = types.ModuleType("mlla_rtdetr.modeling")
        stub.__path__ = [os.path.join(mlla_rtdetr.__path__[0], "modeling")]
        sys.modules["mlla_rtdetr.modeling"] = stub
    sys.meta_path.insert(0, Block())
    __import__(target)
    print("imported", target)
''')


@pytest.mark.parametrize("target, allowed", [
    ("errors", ["errors"]),
    ("config", ["errors", "config"]),
    ("modeling.layers", ["errors", "modeling.layers"]),
    ("modeling", ["errors", "modeling"]),
    ("data", ["errors", "config", "modeling", "data"]),
    ("checkpoint", ["errors", "config", "model_zoo", "modeling", "checkpoint"]),
    ("engine", ["errors", "config", "model_zoo", "modeling", "data", "checkpoint", "engine"]),
    ("launch.job", ["errors", "config", "model_zoo", "modeling", "data", "checkpoint", "engine", "launch"]),
])
def test_package_imports_with_higher_layers_blocked(target, allowed):
    proc = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, f"mlla_rtdetr.{target}", ",".join(allowed)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"imported mlla_rtdetr.{target}" in proc.stdout


# ----------------------------------------------------------------------------- config names
@pytest.mark.parametrize("name, expected", [
    ("rtdetr_r18vd_6x_coco.py", "projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py"),
    ("rtdetr_r18vd_6x_coco", "projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py"),
    ("projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py", "projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py"),
    ("models/rtdetr_r18vd.py", "projects/mlla_rtdetr/configs/models/rtdetr_r18vd.py"),
    ("common/train.py", "configs/common/train.py"),
    ("configs/common/data/coco_detection.py", "configs/common/data/coco_detection.py"),
])
def test_config_names_resolve(name, expected):
    assert config_path(name) == (REPO / expected).resolve()


def test_config_path_prefers_an_existing_file(tmp_path, monkeypatch):
    mine = tmp_path / "rtdetr_r18vd_6x_coco.py"
    mine.write_text("x = dict(a=1)\n")
    monkeypatch.chdir(tmp_path)
    assert config_path("rtdetr_r18vd_6x_coco.py") == mine.resolve()
    assert get_config("rtdetr_r18vd_6x_coco.py").x.a == 1


@pytest.mark.parametrize("name, closest", [
    ("rtdetr_r18vd_6x_cocoo.py", "projects/mlla_rtdetr/configs/rtdetr_r18vd_6x_coco.py"),
    ("projects/mlla_rtdetr/configs/mlla_rtdetr_t_6x.py", "projects/mlla_rtdetr/configs/mlla_rtdetr_t_6x_coco.py"),
    ("/elsewhere/rtdetrv2_r18vd_120e_coco.py", "projects/mlla_rtdetr/configs/rtdetrv2_r18vd_120e_coco.py"),
    ("configs/common/trian.py", "configs/common/train.py"),
    ("models/rtdetr_r19vd.py", "projects/mlla_rtdetr/configs/models/rtdetr_r18vd.py"),
])
def test_missing_config_names_the_closest(name, closest):
    with pytest.raises(ConfigNotFoundError) as e:
        config_path(name)
    message = str(e.value)
    assert f"Config file '{name}' does not exist" in message
    assert f"Did you mean {closest}?" in message
    assert isinstance(e.value, ConfigError) and isinstance(e.value, FileNotFoundError)


def test_missing_config_without_a_close_name_lists_the_recipes():
    with pytest.raises(ConfigNotFoundError, match=r"Recipes: .*rtdetr_r18vd_6x_coco\.py"):
        config_path("zzzz.py")
