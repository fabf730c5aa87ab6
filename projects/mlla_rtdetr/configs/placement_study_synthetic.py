"""Base recipe of the CPU placement study (``projects/mlla_rtdetr/configs/sweeps/placements.txt``): a small
RT-DETR-R18-like model - the "none" placement, i.e. the convolutional / AIFI baseline - trained
on the embedded ``synthetic_shapes`` dataset at the scale of the ``make demo`` recipe.

Model: ``rtdetr_tiny_synthetic.py`` (ResNet-18-vd at base width 16, AIFI on S5 + CCFF with
RepVGG blocks, hidden width 64, 2 decoder layers, 40 queries; imported, not copied) at 128 px.
Training: that of ``mlla_rtdetr_demo_synthetic.py`` (imported: 600 iterations x 8 images, no
strong augmentation, AdamW 1e-3 with a 50-iteration warm-up and cosine decay to 5 %, EMA 0.99),
except that the data order follows ``train.seed`` (so a seed sweep varies initialisation and data)
and the EMA weights are evaluated once, at the end.

Each placement of the study is a set of overrides on this recipe; the same overrides apply to
``rtdetrv2_r18vd_120e_coco.py`` for the study at COCO scale (see the model zoo README)::

    python tools/sweep.py --config-file projects/mlla_rtdetr/configs/placement_study_synthetic.py \\
        --runs-file projects/mlla_rtdetr/configs/sweeps/placements.txt --set train.seed=0,1,2 \\
        --output-dir output/sweeps/placements
"""
from .mlla_rtdetr_demo_synthetic import IMAGE_SIZE, dataloader, lr_multiplier, optimizer, train  # noqa: F401
from .rtdetr_tiny_synthetic import model

model.encoder.eval_spatial_size = IMAGE_SIZE
model.decoder.eval_spatial_size = IMAGE_SIZE

dataloader.train.seed = None  # data order and augmentation follow train.seed

train.output_dir = "./output/placement_study_synthetic"
train.eval_period = 0  # only the final evaluation
train.checkpointer.period = 300
train.model_ema.eval_raw = False
