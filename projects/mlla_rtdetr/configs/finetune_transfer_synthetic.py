"""Does fine-tuning help? The tiny RT-DETR on a small on-disk dataset, from scratch or from the
same model pre-trained on the embedded ``synthetic_shapes`` data (same settings, same iterations).

Target data (``data/shapes_small``, written by ``tools/make_shapes_dataset.py``): 160 training /
100 validation images (at 128 px), only circles and stars annotated (the other three shapes are drawn but are
background), objects smaller (8-25 % of the side instead of 15-45 %), up to 6 per image,
stronger background texture, another seed. The pre-trained checkpoint's classes are the five
shapes: fine-tuning keeps the rows of "circle" and "star" (matched by name).

Commands and numbers: projects/mlla_rtdetr/README.md, "Fine-tuning: does pre-training help?";
the two starts x 3 seeds are ``configs/sweeps/finetune_transfer.txt``.
"""
from .rtdetr_tiny_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.num_classes = 2
dataloader.train.dataset.names = "shapes_small_train"
dataloader.train.dataset.json_file = "data/shapes_small/annotations/instances_train.json"
dataloader.train.dataset.image_root = "data/shapes_small/train"
dataloader.test.dataset.names = "shapes_small_val"
dataloader.test.dataset.json_file = "data/shapes_small/annotations/instances_val.json"
dataloader.test.dataset.image_root = "data/shapes_small/val"
dataloader.train.num_workers = 0
# 128 px input (objects of 10-32 px), no multi-scale, as the demo recipe: cheap on a CPU
dataloader.train.mapper.image_size = (128, 128)
dataloader.train.multiscale_sizes = None
dataloader.test.mapper.image_size = (128, 128)
model.encoder.eval_spatial_size = (128, 128)
model.decoder.eval_spatial_size = (128, 128)
train.max_iter = 200
train.eval_period = 200
train.checkpointer.period = 200
train.output_dir = "./output/finetune_transfer_synthetic"
