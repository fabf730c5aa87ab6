#!/usr/bin/env python
"""Draw training samples after the RT-DETR augmentations (boxes + class names) to PNG files.

Examples::

    python tools/visualize_data.py --config-file configs/common/data/synthetic_detection.py \
        --num-images 8 --output-dir output/vis
    python tools/visualize_data.py --config-file projects/mlla_rtdetr/configs/<recipe>.py \
        --num-images 4 --output-dir output/vis dataloader.train.stop_aug_epoch=0

``--config-file`` is a path or a name under configs/ or projects/mlla_rtdetr/configs/. Trailing
``key=value`` arguments override the config (validated: an unknown key is an error).
"""
import argparse
import os
import sys

from PIL import Image

from mlla_rtdetr.errors import run_main
from mlla_rtdetr.utils.visualize import class_color, class_name, draw_boxes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="LazyConfig file defining dataloader.train")
    parser.add_argument("--num-images", type=int, default=8, help="number of samples to draw")
    parser.add_argument("--output-dir", required=True, help="folder for the PNG files")
    parser.add_argument("--start-iter", type=int, default=0, help="first training iteration to draw")
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="draw the train pipeline (augmented, with boxes) or the test pipeline")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: key=value ...")
    return parser.parse_args(argv)


def draw_sample(sample, class_names):
    """PIL image of a mapped sample (``image`` (3, H, W) uint8) with its gt boxes and class names."""
    image = sample["image"].permute(1, 2, 0).numpy()
    inst = sample.get("instances")
    if inst is None:
        return Image.fromarray(image, "RGB")
    classes = inst.gt_classes.tolist()
    drawn = draw_boxes(image, inst.gt_boxes.tensor, [class_name(c, class_names) for c in classes],
                       [class_color(c) for c in classes])
    return Image.fromarray(drawn, "RGB")


def main(argv=None):
    args = parse_args(argv)
    from detectron2.config import instantiate
    from detectron2.data import MetadataCatalog

    from mlla_rtdetr.engine import load_config

    cfg = load_config(args.config_file, args.opts, require=("dataloader",))
    loader_cfg = cfg.dataloader.train if args.split == "train" else cfg.dataloader.test
    loader_cfg.num_workers = 0
    loader = instantiate(loader_cfg)
    names = loader_cfg.dataset.names
    names = [names] if isinstance(names, str) else list(names)
    class_names = list(getattr(MetadataCatalog.get(names[0]), "thing_classes", []))
    if args.split == "train":
        loader.set_start_iter(args.start_iter)

    os.makedirs(args.output_dir, exist_ok=True)
    written = 0
    for it, batch in enumerate(loader, start=args.start_iter if args.split == "train" else 0):
        for j, sample in enumerate(batch):
            path = os.path.join(args.output_dir, f"{args.split}_iter{it:06d}_{j:02d}_id{sample['image_id']}.png")
            draw_sample(sample, class_names).save(path)
            written += 1
            if written >= args.num_images:
                print(f"Wrote {written} images to {args.output_dir}")
                return 0
    print(f"Wrote {written} images to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
