#!/usr/bin/env python
"""Summary of a detection dataset in any of the formats training reads, and the problems in it.

Prints the number of images, boxes per class (and images holding each class), a histogram of box
sizes (sqrt of the box area in pixels; COCO small / medium / large), the most common image sizes,
the images without boxes, what loading fixes in the annotations (boxes clipped to the image,
zero-area or crowd boxes dropped), and the problems training would meet: image files that do not
exist or are empty, images whose header cannot be read or whose size differs from the annotations
(``--decode``: decode every image, which also finds truncated files).

    # COCO json
    python tools/dataset_summary.py --json-file trees/train.json --image-root trees/images
    # Pascal VOC folder
    python tools/dataset_summary.py --voc-root trees_voc --split train
    # ultralytics YOLO data.yaml
    python tools/dataset_summary.py --yolo-yaml trees_yolo/data.yaml --split val
    # the datasets a config trains and tests on (the same overrides as tools/train_net.py)
    python tools/dataset_summary.py --config-file CFG dataloader.train.dataset.names=... ...
    # a registered name (detectron2's builtin coco_2017_val, voc_2007_test ...)
    python tools/dataset_summary.py --name coco_2017_val

Exit status: 0 when no problem is found, 2 when the dataset cannot be read (the message says
why) or problems are found. ``--json FILE`` also writes everything as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Tuple

from mlla_rtdetr.errors import ConfigError, run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("dataset (one of)")
    src.add_argument("--json-file", help="COCO instances json (with --image-root)")
    src.add_argument("--image-root", help="folder the json's file_names are relative to")
    src.add_argument("--voc-root", help="Pascal VOC folder (Annotations/, ImageSets/Main/, JPEGImages/)")
    src.add_argument("--yolo-yaml", help="ultralytics data.yaml")
    src.add_argument("--config-file", help="a recipe: summarize the datasets of its train and test loaders")
    src.add_argument("--name", help="a registered dataset name (e.g. detectron2's coco_2017_val)")
    p.add_argument("--split", help="VOC: ImageSets/Main/<split>.txt (default train); YOLO: train / val / test "
                                   "(default train); --config-file: train or test (default both)")
    p.add_argument("--class-names", nargs="+", default=None, help="VOC: the classes, in id order "
                                                                   "(default: the names in Annotations/)")
    p.add_argument("--decode", action="store_true", help="decode every image (slow; finds truncated files)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the summary to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="--config-file overrides key=value")
    return p


def datasets_to_summarize(args) -> List[Tuple[str, str]]:
    """(title, registered name) of each dataset to summarize, registering them from the arguments."""
    from mlla_rtdetr.data import register_dataset

    given = [k for k in ("json_file", "voc_root", "yolo_yaml", "config_file", "name") if getattr(args, k)]
    if len(given) != 1:
        raise ConfigError("Give one dataset: --json-file with --image-root, --voc-root, --yolo-yaml, "
                          f"--config-file or --name (got {['--' + g.replace('_', '-') for g in given] or 'none'}).")
    if args.name:
        register_dataset(args.name)
        return [(args.name, args.name)]
    if args.json_file:
        if not args.image_root:
            raise ConfigError("--json-file needs --image-root (the folder its file_names are relative to).")
        name = register_dataset(f"summary:{args.json_file}", json_file=args.json_file, image_root=args.image_root)
        return [(args.json_file, name)]
    if args.voc_root or args.yolo_yaml:
        split = args.split or "train"
        source = {"voc_root": args.voc_root} if args.voc_root else {"yolo_yaml": args.yolo_yaml}
        path = args.voc_root or args.yolo_yaml
        name = register_dataset(f"summary:{path}:{split}", split=split, class_names=args.class_names, **source)
        return [(f"{path} ({split})", name)]
    from mlla_rtdetr.data import dataset_nodes, register_node
    from mlla_rtdetr.engine import load_config

    cfg = load_config(args.config_file, args.opts)
    loaders = [args.split] if args.split else ["train", "test"]
    if not set(loaders) <= {"train", "test"}:
        raise ConfigError(f"With --config-file, --split is train or test, got {args.split!r}.")
    return [(f"{key} {name}", name) for key, node in dataset_nodes(cfg, loaders).items()
            for name in register_node(node, key)]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from mlla_rtdetr.data import summarize_dataset

    summaries = []
    for title, name in datasets_to_summarize(args):
        summary = summarize_dataset(name, decode=args.decode)
        summary.name = title
        print(summary.format())
        print()
        summaries.append(summary)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump([s.to_dict() for s in summaries], f, indent=1)
    problems = sum(s.num_problems for s in summaries)
    if problems:
        print(f"dataset_summary.py: {problems} problem(s) found (listed above).", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
