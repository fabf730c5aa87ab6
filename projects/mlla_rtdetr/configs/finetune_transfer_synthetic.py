"""Does fine-tuning help? The tiny RT-DETR on a small on-disk dataset, from scratch or from the
same model pre-trained on the embedded ``synthetic_shapes`` data (same settings, same iterations).

Target data (``data/shapes_small``, written by ``tools/make_shapes_dataset.py``): 160 training /
100 validation images, only circles and stars annotated (the other three shapes are drawn but are
background), objects smaller (8-25 % of the side instead of 15-45 %), up to 6 per image,
stronger background texture, another seed. The pre-trained checkpoint's classes are the five
shapes: fine-tuning keeps the rows of "circle" and "star" (matched by name).

Commands and numbers: projects/mlla_rtdetr/README.md, "Fine-tuning: does pre-training help?";
the two starts x 3 seeds are ``configs/sweeps/finetune_transfer.txt``.
"""
from .rtdetr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.num_classes = 2
for split, name in (("train", "train"), ("test", "val")):
    dataset = dataloader[split].dataset
    dataset.names = f"shapes_small_{name}"
    dataset.json_file = f"data/shapes_small/annotations/instances_{name}.json"
    dataset.image_root = f"data/shapes_small/{name}"
dataloader.train.num_workers = 0
train.max_iter = 300
train.eval_period = 300
train.checkpointer.period = 300
train.output_dir = "./output/finetune_transfer_synthetic"
