#!/usr/bin/env python
"""Write a generated detection dataset to disk as COCO: a ``synthetic_shapes`` variant (another
size, difficulty and class subset of the embedded dataset, e.g. a small target dataset for
fine-tuning experiments) or, with ``--kind photos``, the photo-paste set (objects cut from real
photographs installed with matplotlib and scikit-learn, pasted onto photo backgrounds; see
``mlla_rtdetr/data/datasets/photo_paste.py``).

    python tools/make_shapes_dataset.py --output data/shapes_small --classes circle,star \\
        --num-train 160 --num-val 100 --min-object-size 0.08 --max-object-size 0.25 \\
        --max-objects 6 --texture-strength 0.6 --seed 1
    python tools/make_shapes_dataset.py --kind photos --output data/photo_paste   # 1600 / 200 at 160 px

Writes ``OUTPUT/{train,val}/*.png`` and ``OUTPUT/annotations/instances_{train,val}.json``. Every
class is still drawn (shapes) or pasted (photos); only the ``--classes`` are annotated (category ids 1..k in that
order), so the others are background the detector must learn to ignore. ``--rename a=b`` renames
a class in the json (e.g. ``circle=ball``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlla_rtdetr.errors import ConfigError, run_main


KINDS = ("shapes", "photos")


def _config_classes(kind: str):
    """(config dataclass, class names) of a dataset kind."""
    if kind == "photos":
        from mlla_rtdetr.data.datasets.photo_paste import PHOTO_CLASSES, PhotoPasteConfig

        return PhotoPasteConfig, PHOTO_CLASSES
    from mlla_rtdetr.data.datasets.synthetic import SYNTHETIC_CLASSES, SyntheticShapesConfig

    return SyntheticShapesConfig, SYNTHETIC_CLASSES


def build_parser() -> argparse.ArgumentParser:
    import dataclasses

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=KINDS, default="shapes", help="synthetic shapes or photo paste (default shapes)")
    p.add_argument("--output", required=True, help="folder to write (must not hold a dataset yet)")
    p.add_argument("--classes", default=None, help="comma-separated classes to annotate (default: all)")
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW", help="rename a class in the json")
    knobs = {}
    for kind in KINDS:
        for f in dataclasses.fields(_config_classes(kind)[0]()):
            knobs.setdefault(f.name, (type(f.default), []))[1].append(f"{kind} {f.default}")
    for name, (kind_type, defaults) in knobs.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind_type, default=None,
                       help=f"(default: {', '.join(defaults)})")
    return p


def main(argv=None) -> int:
    import dataclasses

    args = build_parser().parse_args(argv)
    config_cls, all_classes = _config_classes(args.kind)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    foreign = [n for n, v in vars(args).items() if v is not None and n not in fields
               and n not in ("kind", "output", "classes", "rename")]
    if foreign:
        raise ConfigError(f"--{foreign[0].replace('_', '-')} does not apply to --kind {args.kind}.")
    classes = args.classes.split(",") if args.classes else list(all_classes)
    unknown = [c for c in classes if c not in all_classes]
    if unknown:
        raise ConfigError(f"--classes: unknown {unknown}; the classes are {', '.join(all_classes)}.")
    renames = dict(r.split("=", 1) for r in args.rename)
    root = Path(args.output)
    if (root / "annotations").exists():
        raise ConfigError(f"{root} already holds a dataset (annotations/); choose another --output.")
    try:
        cfg = config_cls(**{k: getattr(args, k) for k in fields if getattr(args, k) is not None})
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if args.kind == "photos":
        from mlla_rtdetr.data.datasets.photo_paste import generate_photo_paste as generate
    else:
        from mlla_rtdetr.data.datasets.synthetic import generate_synthetic_shapes as generate
    generate(root, cfg)
    for split in ("train", "val"):
        path = root / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        old_ids = {c["id"]: c["name"] for c in coco["categories"]}
        supercategory = coco["categories"][0]["supercategory"]
        new_ids = {name: i + 1 for i, name in enumerate(classes)}
        coco["annotations"] = [dict(a, category_id=new_ids[old_ids[a["category_id"]]]) for a in coco["annotations"]
                               if old_ids[a["category_id"]] in new_ids]
        coco["categories"] = [{"id": i, "name": renames.get(n, n), "supercategory": supercategory}
                              for n, i in new_ids.items()]
        path.write_text(json.dumps(coco))
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes of "
              f"{', '.join(c['name'] for c in coco['categories'])} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
