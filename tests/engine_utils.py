"""Test helpers of the engine tests: a tiny detectron2-style detector, a deterministic resumable
train loader and a registered toy dataset, so engine mechanics are tested without the real model.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from detectron2.config import LazyCall as L
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from mlla_rtdetr.config import get_config
from mlla_rtdetr.data import FastCOCOEvaluator

IMAGE_SIZE = 32
CLASSES = ["a", "b"]


def toy_dicts(name: str, num_images: int = 48, seed: int = 0) -> List[Dict[str, Any]]:
    """One box per image; class 0 boxes are bright, class 1 boxes dark (learnable)."""
    rng = np.random.default_rng(seed)
    dicts = []
    for i in range(num_images):
        x, y = rng.integers(0, 14, 2)
        w, h = rng.integers(8, 16, 2)
        cls = int(rng.integers(0, 2))
        dicts.append(dict(
            file_name=f"{name}_{i}.png", image_id=i + 1, height=IMAGE_SIZE, width=IMAGE_SIZE,
            annotations=[dict(bbox=[float(x), float(y), float(w), float(h)], bbox_mode=BoxMode.XYWH_ABS,
                              category_id=cls, iscrowd=0)],
        ))
    return dicts


def register_toy(name: str, num_images: int = 48, seed: int = 0) -> str:
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: toy_dicts(name, num_images, seed))
        MetadataCatalog.get(name).set(
            thing_classes=list(CLASSES), thing_dataset_id_to_contiguous_id={0: 0, 1: 1}
        )
    return name


def get_toy_dicts(names: str) -> List[Dict[str, Any]]:
    return DatasetCatalog.get(names)


def render(d: Dict[str, Any]) -> Dict[str, Any]:
    """Dataset dict -> model input with a uint8 image and gt Instances."""
    img = torch.full((3, IMAGE_SIZE, IMAGE_SIZE), 100, dtype=torch.uint8)
    ann = d["annotations"][0]
    x, y, w, h = [int(v) for v in ann["bbox"]]
    img[:, y:y + h, x:x + w] = 250 if ann["category_id"] == 0 else 10
    inst = Instances((IMAGE_SIZE, IMAGE_SIZE))
    inst.gt_boxes = Boxes(torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32))
    inst.gt_classes = torch.tensor([ann["category_id"]], dtype=torch.int64)
    return {"image": img, "instances": inst, "height": d["height"], "width": d["width"], "image_id": d["image_id"]}


class ToyTrainLoader:
    """Deterministic epoch-aware loader with ``iters_per_epoch`` and ``set_start_iter``."""

    def __init__(self, dataset, total_batch_size: int = 4, seed: int = 0, crash_at: Optional[int] = None):
        self.crash_at = crash_at  # simulates a killed run: raises when iteration `crash_at` is requested
        self.dataset = list(dataset)
        self.total_batch_size = total_batch_size
        self.num_samples = len(self.dataset)
        self.iters_per_epoch = self.num_samples // total_batch_size
        self.seed = seed
        self.start_iter = 0

    def set_start_iter(self, start_iter: int) -> None:
        self.start_iter = int(start_iter)

    def __iter__(self):
        it = self.start_iter
        while True:
            if self.crash_at is not None and it == self.crash_at:
                raise KeyboardInterrupt(f"simulated kill at iteration {it}")
            epoch, b = divmod(it, self.iters_per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            idx = order[b * self.total_batch_size:(b + 1) * self.total_batch_size]
            yield [render(self.dataset[i]) for i in idx]
            it += 1


def toy_test_loader(dataset, batch_size: int = 8):
    data = [render(d) for d in dataset]
    return [data[i:i + batch_size] for i in range(0, len(data), batch_size)]


class ToyDetector(nn.Module):
    """Regresses one box and a class per image. Training draws ``torch.rand`` (like RT-DETR's
    denoising noise) so exact resume depends on per-iteration seeding.

    ``nan_after``: the classification loss becomes NaN once this many training steps ran.
    """

    def __init__(self, num_classes: int = 2, nan_after: Optional[int] = None):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8 * 4, 4 + num_classes)
        self.nan_after = nan_after
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def _forward(self, batched):
        x = torch.stack([b["image"].float() for b in batched]) / 255.0
        f = F.adaptive_avg_pool2d(self.backbone(x), 2).flatten(1)
        return self.head(f)

    def forward(self, batched):
        out = self._forward(batched)
        if self.training:
            tgt = torch.stack([b["instances"].gt_boxes.tensor[0] for b in batched]) / IMAGE_SIZE
            cls = torch.stack([b["instances"].gt_classes[0] for b in batched])
            noise = 1.0 + 0.1 * torch.rand(())
            losses = {"loss_box": F.l1_loss(out[:, :4].sigmoid(), tgt) * noise,
                      "loss_cls": F.cross_entropy(out[:, 4:], cls)}
            self.steps += 1
            if self.nan_after is not None and int(self.steps) > self.nan_after:
                losses["loss_cls"] = losses["loss_cls"] * float("nan")
            return losses
        results = []
        for b, o in zip(batched, out):
            box = o[:4].sigmoid() * IMAGE_SIZE
            x1, x2 = torch.minimum(box[0], box[2]), torch.maximum(box[0], box[2]) + 1
            y1, y2 = torch.minimum(box[1], box[3]), torch.maximum(box[1], box[3]) + 1
            inst = Instances((b["height"], b["width"]))
            inst.pred_boxes = Boxes(torch.stack([x1, y1, x2, y2])[None])
            prob = o[4:].softmax(-1)
            inst.scores = prob.max()[None]
            inst.pred_classes = prob.argmax()[None]
            results.append({"instances": inst})
        return results


def toy_config(output_dir: str, train_name: str = "engine_toy_train", test_name: str = "engine_toy_val"):
    """A full recipe (model, dataloader, optimizer, lr_multiplier, train) around the toy pieces."""
    register_toy(train_name, 48, seed=0)
    register_toy(test_name, 16, seed=1)
    cfg = OmegaConf.create(flags={"allow_objects": True})
    cfg.model = L(ToyDetector)(num_classes=2)
    cfg.dataloader = OmegaConf.create()
    cfg.dataloader.train = L(ToyTrainLoader)(dataset=L(get_toy_dicts)(names=train_name), total_batch_size=4, seed=0)
    cfg.dataloader.test = L(toy_test_loader)(dataset=L(get_toy_dicts)(names=test_name), batch_size=8)
    cfg.dataloader.evaluator = L(FastCOCOEvaluator)(dataset_name=test_name, output_dir=output_dir, distributed=True)
    cfg.optimizer = get_config("common/optim.py").AdamW
    cfg.optimizer.lr = 1e-2
    cfg.lr_multiplier = get_config("common/schedule.py").multistep
    cfg.lr_multiplier.milestones = [1]  # epochs: 12 iterations
    cfg.lr_multiplier.warmup = 3
    cfg.train = get_config("common/train.py").train
    cfg.train.output_dir = output_dir
    cfg.train.max_iter = 20
    cfg.train.eval_period = 10
    cfg.train.log_period = 5
    cfg.train.checkpointer.period = 5
    cfg.train.checkpointer.max_to_keep = 2
    cfg.train.model_ema.warmups = 5
    cfg.train.model_ema.eval_raw = True
    cfg.train.device = "cpu"
    cfg.train.seed = 7
    return cfg
