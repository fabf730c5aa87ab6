"""Checkpoint files and formats, one job per module:

* ``io``           the one reader (weights-only unless asked) and the atomic writers;
* ``state_dict``   the state dict inside any known container (official RT-DETR / MLLA / DEIM, ours);
* ``report``       the key tables of every mismatch message;
* ``rtdetr_converter``, ``mlla_converter``, ``hybrid_init``  official formats -> our key names;
* ``class_rows``   class-dependent tensors and carrying rows across class sets (fine-tuning);
* ``sources``      official checkpoints by name, URLs, the download cache.

Loading into a training run (format detection, EMA, fine-tuning) is ``mlla_rtdetr.engine.init_checkpoint``;
the training checkpointer is ``mlla_rtdetr.engine.checkpointer``.
"""
