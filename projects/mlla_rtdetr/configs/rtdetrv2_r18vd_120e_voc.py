"""RT-DETRv2-R18 on Pascal VOC (official ``rtdetrv2_r18vd_120e_voc.yml``).

The ``rtdetrv2_r18vd_120e_coco.py`` recipe with 20 classes, trained on VOC 2007 + 2012 trainval
(16,551 images, the official ``trainval.txt``) and evaluated with COCO box metrics on VOC 2007 test
(4,952 images, the official ``test.txt``), as the official YAML; total batch 32. Everything else is
the base recipe: 120 epochs, strong augmentation until epoch 117, no multi-scale, AdamW groups,
warm-up, EMA. The official YAML starts from the ImageNet backbone (not from a COCO model); as with
the base recipe, pass it as ``train.init_checkpoint`` (converted by ``tools/convert_rtdetr_checkpoint.py
--kind resnet_vd --prefix backbone.``).

Data: detectron2's builtin ``voc_2007_trainval`` / ``voc_2012_trainval`` / ``voc_2007_test`` read
``$DETECTRON2_DATASETS/VOC2007`` and ``VOC2012`` (the VOCdevkit layout: ``Annotations/``,
``JPEGImages/``, ``ImageSets/Main/{trainval,test}.txt``). As official, objects marked
``difficult`` are kept. detectron2 reads the 1-based VOC corners as pixel indices (xmin - 1,
ymin - 1); the official loader keeps the raw numbers. The evaluator writes the COCO-format ground
truth of the test set once under ``<output_dir>/inference``.
"""
from .rtdetrv2_r18vd_120e_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.num_classes = 20
dataloader.train.dataset.names = ["voc_2007_trainval", "voc_2012_trainval"]
dataloader.train.total_batch_size = 32
dataloader.test.dataset.names = "voc_2007_test"
dataloader.evaluator.output_dir = "${train.output_dir}/inference"
train.output_dir = "./output/rtdetrv2_r18vd_120e_voc"
