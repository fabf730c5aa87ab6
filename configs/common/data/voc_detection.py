"""Pascal VOC detection data (detectron2 LazyConfig), read with detectron2's VOC loader.

The COCO data pipeline (``coco_detection.py``: same transforms, batch and evaluation with COCO
box metrics) on VOC data. By default the standard split: train on VOC2007 trainval + VOC2012
trainval, test on VOC2007 test, through detectron2's builtin names (``DETECTRON2_DATASETS``
pointing at the folder holding ``VOC2007/`` and ``VOC2012/``); 20 classes (set
``model.num_classes = 20`` in the recipe).

A VOC-layout folder of your own (``Annotations/*.xml``, ``ImageSets/Main/<split>.txt``,
``JPEGImages/``) needs only overrides; the classes are the object names found in its
``Annotations/`` (sorted), or ``class_names=[...]`` to pin them::

    dataloader.train.dataset.names=my_train dataloader.test.dataset.names=my_val \\
    dataloader.train.dataset.voc_root=/data/my_voc \\
    dataloader.train.dataset.split=train dataloader.test.dataset.split=val

(as in every data config, ``dataloader.test.dataset.voc_root`` follows the train one unless set.)
"""
from mlla_rtdetr.config import get_config

dataloader = get_config("common/data/coco_detection.py").dataloader

dataloader.train.dataset.names = ["voc_2007_trainval", "voc_2012_trainval"]
dataloader.train.dataset.split = "trainval"
dataloader.test.dataset.names = "voc_2007_test"
dataloader.test.dataset.split = "test"
