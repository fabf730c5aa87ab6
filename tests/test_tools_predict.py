"""tools/predict.py on the tiny config: drawn PNGs / video written at the original sizes, detections
listed in original-image pixels above the score threshold."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mlla_rtdetr.utils.visualize import class_color, draw_detections
from tools_utils import TINY_CONFIG, load_tool


def test_draw_detections_threshold_and_colors():
    img = np.zeros((40, 50, 3), np.uint8)
    boxes = torch.tensor([[5.0, 5.0, 20.0, 30.0], [30.0, 10.0, 45.0, 35.0]])
    out = draw_detections(img, boxes, torch.tensor([0.9, 0.2]), torch.tensor([1, 2]), ["a", "b", "c"],
                          score_threshold=0.5)
    assert out.shape == img.shape and out.dtype == np.uint8 and img.sum() == 0  # input untouched
    assert tuple(out[20, 5]) == class_color(1)  # left edge of the kept box
    assert out[20, 30].sum() == 0  # the low-score box is not drawn
    with pytest.raises(ValueError):
        draw_detections(img.astype(np.float32), boxes, torch.ones(2), torch.zeros(2, dtype=torch.long))


def test_predict_images_folder_and_video(tmp_path):
    av = pytest.importorskip("av")
    from mlla_rtdetr.utils.media import VideoWriter

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    sizes = [(90, 120), (64, 100), (150, 80)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    video = tmp_path / "clip.mp4"
    with VideoWriter(str(video), fps=5) as writer:
        for _ in range(3):
            writer.write(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))

    out = tmp_path / "out"
    tool = load_tool("predict")
    summary = tool.main(["--config-file", TINY_CONFIG, "--checkpoint", "", "--input", str(folder), str(video),
                         "--output", str(out), "--score-threshold", "0.0", "--batch-size", "2"])
    for i, (h, w) in enumerate(sizes):
        drawn = np.asarray(Image.open(out / f"img{i}.png"))
        assert drawn.shape == (h, w, 3)
    saved = json.loads((out / "detections.json").read_text())
    assert saved["class_names"] == ["circle", "rectangle", "triangle", "star", "cross"]
    dets = saved["results"][str(folder / "img2.png")]["detections"]
    assert len(dets) == 40  # num_top_queries of the tiny config, threshold 0
    for d in dets:
        x1, y1, x2, y2 = d["bbox_xyxy"]
        assert -1 <= x1 <= x2 <= 80 + 1 and -1 <= y1 <= y2 <= 150 + 1  # original-image pixels
        assert 0 <= d["class_id"] < 5 and d["class_name"] == saved["class_names"][d["class_id"]]
    assert summary["results"][str(video)]["output"] == str(out / "clip.mp4")
    assert len(saved["results"][str(video)]["frames"]) == 3
    with av.open(str(out / "clip.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (64, 96, 3)

    # A threshold above every score keeps nothing.
    summary = tool.main(["--config-file", TINY_CONFIG, "--checkpoint", "", "--input", str(folder / "img0.png"),
                         "--output", str(tmp_path / "out2"), "--score-threshold", "1.0"])
    assert summary["results"][str(folder / "img0.png")]["detections"] == []


def test_predict_rejects_missing_input(tmp_path):
    tool = load_tool("predict")
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        tool.main(["--config-file", TINY_CONFIG, "--input", str(tmp_path / "nope.png"), "--output", str(tmp_path)])
