"""Ultralytics YOLO layout data (detectron2 LazyConfig), read directly: no conversion step.

The COCO data pipeline (``coco_detection.py``: same transforms, batch and evaluation with COCO
box metrics) on a dataset described by an ultralytics ``data.yaml`` (``train`` / ``val`` image
folders or list files, ``names``; ``labels/*.txt`` with normalized ``class cx cy w h``; see
``mlla_rtdetr.data.datasets.yolo``). One override names it; the classes are the yaml's
``names`` (set ``model.num_classes`` to their count)::

    dataloader.train.dataset.yolo_yaml=/data/trees/data.yaml model.num_classes=1

(as in every data config, ``dataloader.test.dataset.yolo_yaml`` follows the train one unless set;
the test split is ``val``.)
"""
from mlla_rtdetr.config import get_config

dataloader = get_config("common/data/coco_detection.py").dataloader

dataloader.train.dataset.names = "yolo_train"
dataloader.train.dataset.yolo_yaml = "???"  # required: the data.yaml
dataloader.train.dataset.split = "train"
dataloader.test.dataset.names = "yolo_val"
dataloader.test.dataset.split = "val"
