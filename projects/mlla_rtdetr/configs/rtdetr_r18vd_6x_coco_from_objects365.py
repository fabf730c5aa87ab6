"""RT-DETR-R18 fine-tuned from the official Objects365-pretrained model (official tuning example).

The ``rtdetr_r18vd_6x_coco.py`` recipe started from ``rtdetr_r18vd_5x_coco_objects365_from_paddle.pth``:
the official model pre-trained on Objects365 and fine-tuned on COCO (49.0 AP / 66.5 AP50 on COCO
val2017, the "COCO + Objects365" row of the official PyTorch README). The official PyTorch code documents
this fine-tune as ``tools/train.py -c configs/rtdetr/rtdetr_r18vd_6x_coco.yml -t <that file>``; it is
also the usual start for another 80-class COCO-format dataset (the overrides of
``configs/common/data/coco_detection.py``). To evaluate the published row itself, run the eval
command of the model zoo with this recipe and ``--eval-only``.

``train.init_checkpoint`` is the official URL: downloaded once into ``$MLLA_RTDETR_CACHE/checkpoints``, the file
is recognised as an official checkpoint and converted (EMA weights preferred). Offline: download it
and pass ``train.init_checkpoint=/path/to/rtdetr_r18vd_5x_coco_objects365_from_paddle.pth``.
"""
from .rtdetr_r18vd_6x_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

train.init_checkpoint = "https://github.com/lyuwenyu/storage/releases/download/v0.1/rtdetr_r18vd_5x_coco_objects365_from_paddle.pth"
train.output_dir = "./output/rtdetr_r18vd_6x_coco_from_objects365"
