"""Code shared by the analysis / benchmark / predict / export tools in ``tools/`` (they load configs
and build models with :func:`mlla_rtdetr.engine.load_config` / :func:`~mlla_rtdetr.engine.build_model`).

* :mod:`.flops`      parameter counts and fvcore FLOP counting (fvcore counts one multiply-add as
                     one flop, i.e. MACs; we report GFLOPs = 2 x MACs like the RT-DETR papers).
* :mod:`.timing`     latency measurement (warm-up, medians, interleaved comparisons), peak memory.
* :mod:`.bench_cases` the benchmark cases (model inference, train step, encoder only, attention).
* :mod:`.memprobe`   ``python -m mlla_rtdetr.utils.memprobe SPEC`` measures one case's peak memory
                     in a fresh process.
* :mod:`.report`     markdown tables and JSON result files.
* :mod:`.onnx_utils` ONNX export wrappers, onnxruntime execution and output comparison.
* :mod:`.visualize`  drawing detections on images.
* :mod:`.media`      image folders and video files (PyAV) for tools/predict.py.
* :mod:`.console`    the tools' progress lines (``[tool HH:MM:SS] message``).
"""
