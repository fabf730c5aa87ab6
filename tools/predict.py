#!/usr/bin/env python
"""Run a detector (config + checkpoint) on images, folders of images or a video file and write the
pictures with boxes, class names and scores.

* images / folders -> ``<output>/<name>.png`` (one per image), videos -> ``<output>/<name>.mp4``
  (H.264 through PyAV); ``<output>/detections.json`` lists every kept detection (XYXY pixels of the
  original image).
* Images are resized by the config's test pipeline (``dataloader.test.mapper``; for a model-only
  config: ``--input-size`` or the model's eval size), run through the detectron2 path
  ``model(list[dict])`` of the ``deploy()``-ed model (folded convs, channels-last, fused CPU
  kernels) in batches of ``--batch-size``; boxes come back in original-image pixels.
* Only detections with ``score >= --score-threshold`` are drawn and listed.

Example::

  python tools/predict.py --config-file projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py \\
      --checkpoint output/rtdetr_tiny_synthetic/model_final.pth --input img1.png some_folder/ \\
      --output output/predictions --score-threshold 0.5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from mlla_rtdetr.engine import build_model, load_config
from mlla_rtdetr.errors import run_main
from mlla_rtdetr.utils.console import tool_log
from mlla_rtdetr.utils.media import VideoWriter, collect_images, is_video, read_video_frames, video_fps
from mlla_rtdetr.utils.visualize import draw_detections


log = tool_log("predict")


class Predictor:
    """Batched inference: RGB uint8 (H, W, 3) arrays -> per image (boxes XYXY, scores, classes)."""

    def __init__(self, cfg, checkpoint: Optional[str], device: str, input_size: Optional[Sequence[int]]):
        from detectron2.config import instantiate
        from torchvision import tv_tensors

        self._tv_tensors = tv_tensors
        self.model = build_model(cfg, checkpoint=checkpoint, device=device, deploy=True)
        self.device = device
        mapper_cfg = cfg.get("dataloader", {}).get("test", {}).get("mapper") if "dataloader" in cfg else None
        if input_size is None and mapper_cfg is not None:
            self.transform = instantiate(mapper_cfg).transforms()
        else:
            from mlla_rtdetr.data.transforms import build_test_transforms

            size = input_size or getattr(self.model, "eval_size", None) or (640, 640)
            self.transform = build_test_transforms(tuple(int(s) for s in size))

    @torch.no_grad()
    def __call__(self, images: List[np.ndarray]) -> List[Dict[str, torch.Tensor]]:
        batch = []
        for img in images:
            h, w = img.shape[:2]
            t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            t = self.transform(self._tv_tensors.Image(t)).as_subclass(torch.Tensor).contiguous()
            batch.append({"image": t.to(self.device), "height": h, "width": w})
        outputs = self.model(batch)
        results = []
        for out in outputs:
            inst = out["instances"].to("cpu")
            results.append({"boxes": inst.pred_boxes.tensor, "scores": inst.scores, "classes": inst.pred_classes})
        return results


def class_names_of(cfg) -> Optional[List[str]]:
    """Class names of the config's dataset: recorded in a run's config.yaml, else read from the
    dataset (a COCO json, VOC folder or data.yaml named by the config). None (labels show class
    ids) for a model-only config or when the dataset cannot be read here."""
    from mlla_rtdetr.data import config_class_names
    from mlla_rtdetr.errors import UserError

    try:
        return config_class_names(cfg)
    except UserError as e:
        log(f"class names unavailable, labelling with class ids: {e}")
        return None


def detections_to_json(det: Dict[str, torch.Tensor], threshold: float, names) -> List[Dict[str, Any]]:
    keep = det["scores"] >= threshold
    out = []
    for box, score, cls in zip(det["boxes"][keep].tolist(), det["scores"][keep].tolist(), det["classes"][keep].tolist()):
        entry = {"bbox_xyxy": [round(v, 2) for v in box], "score": round(score, 4), "class_id": int(cls)}
        if names is not None and 0 <= cls < len(names):
            entry["class_name"] = names[cls]
        out.append(entry)
    return out


def unique_stem(path: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, i = stem, 1
    while name in used:
        name, i = f"{stem}_{i}", i + 1
    used.add(name)
    return name


def run_images(predictor, files, args, names, used) -> Dict[str, Any]:
    from mlla_rtdetr.data.image_io import read_image_rgb

    results = {}
    for start in range(0, len(files), args.batch_size):
        chunk = files[start:start + args.batch_size]
        images = [read_image_rgb(f).permute(1, 2, 0).numpy() for f in chunk]
        for f, img, det in zip(chunk, images, predictor(images)):
            drawn = draw_detections(img, det["boxes"], det["scores"], det["classes"], names, args.score_threshold)
            out_path = os.path.join(args.output, unique_stem(f, used) + ".png")
            Image.fromarray(drawn).save(out_path)
            results[f] = {"output": out_path, "detections": detections_to_json(det, args.score_threshold, names)}
        log(f"images {min(start + args.batch_size, len(files))}/{len(files)}")
    return results


def run_video(predictor, path, args, names, used) -> Dict[str, Any]:
    out_path = os.path.join(args.output, unique_stem(path, used) + ".mp4")
    frames_det = []
    buffer: List[np.ndarray] = []
    with VideoWriter(out_path, video_fps(path)) as writer:
        def flush():
            for img, det in zip(buffer, predictor(buffer)):
                writer.write(draw_detections(img, det["boxes"], det["scores"], det["classes"], names,
                                             args.score_threshold))
                frames_det.append(detections_to_json(det, args.score_threshold, names))
            buffer.clear()
            log(f"{path}: {len(frames_det)} frames")

        for frame in read_video_frames(path, args.max_frames):
            buffer.append(frame)
            if len(buffer) == args.batch_size:
                flush()
        if buffer:
            flush()
    return {path: {"output": out_path, "frames": frames_det}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="recipe or model config (LazyConfig .py)")
    p.add_argument("--checkpoint", default=None,
                   help="weights (default: the config's train.init_checkpoint; '' = random init)")
    p.add_argument("--input", nargs="+", required=True, help="image files, folders of images, video files")
    p.add_argument("--output", required=True, help="folder for the drawn images / videos")
    p.add_argument("--score-threshold", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--input-size", type=int, nargs="+", default=None,
                   help="H [W] model input size (default: the config's test pipeline)")
    p.add_argument("--max-frames", type=int, default=None, help="stop each video after this many frames")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value")
    return p


def main(argv=None) -> Dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error("--score-threshold must be in [0, 1]")
    input_size = None
    if args.input_size:
        if len(args.input_size) > 2:
            parser.error("--input-size takes H or H W")
        input_size = (args.input_size[0], args.input_size[-1])
    videos = [p for p in args.input if os.path.isfile(p) and is_video(p)]
    images = collect_images([p for p in args.input if p not in videos])
    os.makedirs(args.output, exist_ok=True)
    cfg = load_config(args.config_file, args.opts)
    log(f"building {args.config_file}")
    predictor = Predictor(cfg, args.checkpoint, args.device, input_size)
    names = class_names_of(cfg)
    used: set = set()
    results: Dict[str, Any] = {}
    if images:
        results.update(run_images(predictor, images, args, names, used))
    for v in videos:
        results.update(run_video(predictor, v, args, names, used))
    summary = {"config_file": args.config_file, "checkpoint": args.checkpoint,
               "score_threshold": args.score_threshold, "class_names": names, "results": results}
    with open(os.path.join(args.output, "detections.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log(f"wrote {len(results)} outputs and detections.json to {args.output}")
    return summary


if __name__ == "__main__":
    sys.exit(run_main(main))
