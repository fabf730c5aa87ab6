"""Common training settings read by ``tools/train_net.py`` (``mlla_rtdetr.engine``).

Recipes take a copy and change what they need::

    from mlla_rtdetr.config import get_config
    train = get_config("common/train.py").train
    train.epochs = 72                 # or: train.max_iter = 90000 (wins when set)
    train.output_dir = "./output/rtdetr_r18vd_6x_coco"

Lengths and periods come in two units. The iteration field wins whenever it is not None, so a
command-line override such as ``train.max_iter=100`` works on an epoch-based recipe:

=====================  ===============================  ==========================================
what                   iterations                       epochs
=====================  ===============================  ==========================================
training length        ``max_iter``                     ``epochs``
evaluation period      ``eval_period``                  ``eval_epochs``
checkpoint period      ``checkpointer.period``          ``checkpointer.period_epochs``
=====================  ===============================  ==========================================

One epoch = ``train_loader.iters_per_epoch`` iterations, i.e. ceil(len(dataset) /
``dataloader.train.total_batch_size``) as computed by the data loader; the engine prints the
conversion at start and writes the resolved iteration values into ``config.yaml``. A period of
0 disables periodic evaluation / checkpoints; the final evaluation and ``model_final.pth`` are
always produced when training completes.
"""

train = dict(
    # Where checkpoints, config.yaml, metrics.json, TensorBoard events and logs go.
    output_dir="./output/default",
    # Weights loaded before training (ignored by --resume when the output dir has a checkpoint):
    # a file, a URL or an official checkpoint's name (a model-zoo row such as
    # "rtdetrv2_r18vd_120e_coco", an ImageNet backbone such as "mlla_t_in1k"), downloaded once into
    # $MLLA_RTDETR_CACHE/checkpoints. Official RT-DETR / MLLA files are detected by their keys and
    # converted. A checkpoint trained on other classes is fine-tuned: its class-dependent tensors
    # start fresh, with the rows of the classes the dataset shares with it (by name) carried over.
    init_checkpoint="",
    # True: refuse a checkpoint whose class-dependent tensors differ from the model's (no fine-tune).
    init_strict=False,
    # Dataset class -> checkpoint class whose rows it starts from (null: a new class), over the
    # name / synonym matching, e.g. {"tree": "potted plant", "blob": null}.
    init_class_map={},
    # Training length: max_iter (iterations) wins over epochs when both are set.
    max_iter=None,
    epochs=72,
    # Evaluate every eval_period iterations (or eval_epochs epochs) and at the end.
    eval_period=None,
    eval_epochs=1,
    # Console / metrics.json / TensorBoard period in iterations.
    log_period=20,
    checkpointer=dict(
        period=None,          # iterations between periodic checkpoints (wins over period_epochs)
        period_epochs=1,      # epochs between periodic checkpoints
        max_to_keep=3,        # periodic checkpoints kept on disk (model_final/best never deleted)
        # Metric for model_best.pth, e.g. "bbox/AP" or "bbox_ema/AP"; "auto" picks bbox_ema/AP
        # when EMA is enabled, else bbox/AP. None disables the best checkpoint.
        best_metric="auto",
        best_mode="max",
    ),
    # Automatic mixed precision (CUDA: float16 with a GradScaler, or bfloat16; CPU: bfloat16).
    amp=dict(enabled=False, dtype="float16"),
    # Gradient clipping by global norm (RT-DETR: clip_max_norm 0.1); unscaled first under AMP.
    clip_grad=dict(enabled=True, max_norm=0.1, norm_type=2.0),
    # EMA of the weights, RT-DETR style: decay_t = decay * (1 - exp(-t / warmups)).
    # Evaluation uses the EMA weights ("bbox_ema/..."); eval_raw also evaluates the raw weights
    # ("bbox/..."). Both are saved in checkpoints.
    # DEIM's EMA restart: at the start of epoch restart_epoch, model, EMA and optimizer go back to
    # model_best.pth and the EMA decay becomes restart_decay (None: off; engine/ema_restart.py).
    model_ema=dict(enabled=True, decay=0.9999, warmups=2000, eval_raw=False,
                   restart_epoch=None, restart_decay=0.9999),
    # torch DistributedDataParallel options.
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    # Global seed; each rank and iteration derives its own RNG state from it, so results are
    # reproducible and resumed runs continue exactly. A negative seed draws a random one.
    seed=42,
    # "auto" = cuda when available, else cpu; or "cpu", "cuda", "cuda:1"...
    device="auto",
    # torch.backends.cudnn.benchmark (faster, not bit-reproducible).
    cudnn_benchmark=False,
)
