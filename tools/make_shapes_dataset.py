#!/usr/bin/env python
"""Write a ``synthetic_shapes`` variant to disk as a COCO dataset: another size, difficulty and
class subset of the embedded dataset, e.g. a small target dataset for fine-tuning experiments.

    python tools/make_shapes_dataset.py --output data/shapes_small --classes circle,star \\
        --num-train 160 --num-val 100 --min-object-size 0.08 --max-object-size 0.25 \\
        --max-objects 6 --texture-strength 0.6 --seed 1

Writes ``OUTPUT/{train,val}/*.png`` and ``OUTPUT/annotations/instances_{train,val}.json``. Every
shape class is still drawn; only the ``--classes`` are annotated (category ids 1..k in that
order), so the others are background the detector must learn to ignore. ``--rename a=b`` renames
a class in the json (e.g. ``circle=ball``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlla_rtdetr.errors import ConfigError, run_main


def build_parser() -> argparse.ArgumentParser:
    from mlla_rtdetr.data.datasets.synthetic import SyntheticShapesConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="folder to write (must not hold a dataset yet)")
    p.add_argument("--classes", default=None, help="comma-separated classes to annotate (default: all five)")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW", help="rename a class in the json")
    defaults = SyntheticShapesConfig()
    for name in ("image_size", "num_train", "num_val", "min_objects", "max_objects", "min_object_size",
                 "max_object_size", "texture_strength", "seed"):
        value = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value, help=f"(default {value})")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from mlla_rtdetr.data.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticShapesConfig, generate_synthetic_shapes

    classes = args.classes.split(",") if args.classes else list(SYNTHETIC_CLASSES)
    unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
    if unknown:
        raise ConfigError(f"--classes: unknown {unknown}; the shapes are {', '.join(SYNTHETIC_CLASSES)}.")
    renames = dict(r.split("=", 1) for r in args.rename)
    root = Path(args.output)
    if (root / "annotations").exists():
        raise ConfigError(f"{root} already holds a dataset (annotations/); choose another --output.")
    knobs = {k: getattr(args, k) for k in ("image_size", "num_train", "num_val", "min_objects", "max_objects",
                                           "min_object_size", "max_object_size", "texture_strength", "seed")}
    generate_synthetic_shapes(root, SyntheticShapesConfig(**knobs))
    for split in ("train", "val"):
        path = root / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        old_ids = {c["id"]: c["name"] for c in coco["categories"]}
        new_ids = {name: i + 1 for i, name in enumerate(classes)}
        coco["annotations"] = [dict(a, category_id=new_ids[old_ids[a["category_id"]]]) for a in coco["annotations"]
                               if old_ids[a["category_id"]] in new_ids]
        coco["categories"] = [{"id": i, "name": renames.get(n, n), "supercategory": "shape"} for n, i in new_ids.items()]
        path.write_text(json.dumps(coco))
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes of "
              f"{', '.join(c['name'] for c in coco['categories'])} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
