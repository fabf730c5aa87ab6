"""Helpers for the tests of tools/analyze_model.py, benchmark.py, predict.py and export_onnx.py."""
import importlib.util
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = str(REPO_ROOT / "projects" / "mlla_rtdetr" / "configs" / "rtdetr_tiny_synthetic.py")
MLLA_TINY_CONFIG = str(REPO_ROOT / "projects" / "mlla_rtdetr" / "configs" / "mlla_rtdetr_tiny_synthetic.py")


def load_tool(name: str):
    """Import ``tools/<name>.py`` by file path (``import tools.x`` would find detectron2's package)."""
    path = REPO_ROOT / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_mlla_tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def spread_weights_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw every float tensor of ``model`` like the parity fixtures do (N(0, 1/fan_in) for
    matrices, 1 + 0.1 N for norm scales, 0.1 N for biases, positive running variances): unlike the
    training init, the encoder's proposal scores then differ clearly between positions, so outputs
    are well conditioned for exact comparisons."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tensors = list(model.named_parameters()) + [
            (k, b) for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var"))
        ]
        for key, t in tensors:
            if key.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif key.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.dim() >= 2:
                fan_in = max(1, t[0].numel())
                t.copy_(torch.randn(t.shape, generator=g) * fan_in ** -0.5)
            elif key.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return model


FAKE_OFFICIAL_CORE = '''
import json, os
import torch
from torch import nn

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "calls.jsonl")


def log(**entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\\n")


class Decoder(nn.Module):
    def __init__(self, dim, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.cls = nn.Linear(dim, num_classes)
        self.box = nn.Linear(dim, 4)


class FakeRTDETR(nn.Module):
    """conv -> tokens -> class / box heads, with the official call contract."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.branch = nn.Conv2d(3, 8, 1, stride=8)  # folded away by deploy(), like RepVGG
        self.decoder = Decoder(8, num_classes)

    def forward(self, x, targets=None):
        f = self.backbone(x)
        if self.branch is not None:
            f = f + self.branch(x)
        t = f.flatten(2).transpose(1, 2)
        return {"pred_logits": self.decoder.cls(t), "pred_boxes": self.decoder.box(t).sigmoid()}

    def deploy(self):
        log(event="deploy")
        self.eval()
        with torch.no_grad():
            self.backbone.weight[:, :, 1:2, 1:2] += self.branch.weight
            self.backbone.bias += self.branch.bias
        self.branch = None
        return self


class FakeCriterion(nn.Module):
    def forward(self, outputs, targets, **metas):
        log(event="criterion", metas=sorted(metas), labels_dtype=str(targets[0]["labels"].dtype),
            boxes_min=min(float(t["boxes"].min()) for t in targets),
            boxes_max=max(float(t["boxes"].max()) for t in targets),
            wh_min=min(float(t["boxes"][:, 2:].min()) for t in targets),
            autocast=torch.is_autocast_enabled())
        return {"loss_vfl": outputs["pred_logits"].sigmoid().mean(),
                "loss_bbox": (outputs["pred_boxes"][:, :1] - targets[0]["boxes"][:1, None]).abs().mean()}


class YAMLConfig:
    def __init__(self, cfg_path, **kwargs):
        log(event="config", path=os.path.basename(cfg_path), kwargs=kwargs)
        self.model = FakeRTDETR()
        self.criterion = FakeCriterion()
'''

FAKE_OFFICIAL_YAML_UTILS = '''
def load_config(path):
    return {"PResNet": {"depth": 18, "pretrained": True}, "HybridEncoder": {"hidden_dim": 8},
            "eval_spatial_size": [640, 640]}
'''


def write_fake_official(root):
    """A stand-in for a checkout of lyuwenyu/RT-DETR with the entry points the benchmark uses
    (``rtdetrv2_pytorch/src/core``: ``YAMLConfig``, ``yaml_utils.load_config``; one config). Every
    call is logged to ``root/calls.jsonl``. Returns ``root``."""
    pkg = Path(root) / "rtdetrv2_pytorch"
    (pkg / "src" / "core").mkdir(parents=True)
    (pkg / "src" / "__init__.py").write_text("")
    (pkg / "src" / "core" / "__init__.py").write_text("from .yaml_config import YAMLConfig  # noqa: F401\n")
    (pkg / "src" / "core" / "yaml_config.py").write_text(FAKE_OFFICIAL_CORE)
    (pkg / "src" / "core" / "yaml_utils.py").write_text(FAKE_OFFICIAL_YAML_UTILS)
    cfg_dir = pkg / "configs" / "rtdetrv2"
    (cfg_dir / "include").mkdir(parents=True)
    (cfg_dir / "fake_r18vd_120e_coco.yml").write_text("PResNet:\n  depth: 18\n")
    (cfg_dir / "include" / "fake_base.yml").write_text("")
    return Path(root)


ZOO_README = REPO_ROOT / "projects" / "mlla_rtdetr" / "README.md"


def zoo_readme_commands() -> list:
    """The ``python tools/train_net.py ...`` lines of the model-zoo README's exact-commands blocks
    (one per table: RT-DETR, D-FINE / DEIM)."""
    blocks = ZOO_README.read_text().split("<!-- exact commands -->")[1:]
    lines = [line.strip() for b in blocks for line in b.split("```bash", 1)[1].split("```", 1)[0].splitlines()]
    return [line for line in lines if line.startswith("python tools/train_net.py")]


def zoo_readme_command(recipe: str, eval_only: bool, weights_dir) -> list:
    """The README's train (or evaluation) command of ``recipe`` as argv, run the way a user on one
    machine without GPUs would: ``python`` -> this interpreter, ``--num-gpus 8`` dropped (one
    process), the ``weights/`` folder of the README -> ``weights_dir``."""
    import shlex

    config = f"--config-file projects/mlla_rtdetr/configs/{recipe}.py "
    found = [c for c in zoo_readme_commands() if config in c + " " and ("--eval-only" in c) == eval_only]
    assert found, f"no {'evaluation' if eval_only else 'training'} command of {recipe} in {ZOO_README}"
    argv = shlex.split(found[0])
    assert argv[:2] == ["python", "tools/train_net.py"] and argv[argv.index("--num-gpus") + 1] == "8", found[0]
    del argv[argv.index("--num-gpus"):argv.index("--num-gpus") + 2]
    prefix = "train.init_checkpoint=weights/"
    argv = [f"train.init_checkpoint={Path(weights_dir) / a[len(prefix):]}" if a.startswith(prefix) else a for a in argv]
    return [sys.executable] + argv[1:]
