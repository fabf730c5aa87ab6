"""RT-DETR transforms and mapper: box/pixel consistency, stop-aug pipeline, sizes."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2 as T

from mlla_rtdetr.data import RTDETRDatasetMapper, multiscale_sizes
from mlla_rtdetr.data.transforms import RandomIoUCrop, RandomPhotometricDistort


def test_multiscale_sizes_match_official_list():
    assert multiscale_sizes() == [480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800]
    assert multiscale_sizes(base=256, min_size=192, max_size=320) == [192, 224, 256, 256, 256, 288, 320]
    with pytest.raises(ValueError):
        multiscale_sizes(base=900)
    with pytest.raises(ValueError):
        multiscale_sizes(base=650)


def _write_box_image(path, h=60, w=80, box=(10, 15, 35, 45)):
    """Black image with one white rectangle [x0, x1) x [y0, y1); returns its dataset dict."""
    arr = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    Image.fromarray(arr).save(path)
    return {
        "file_name": str(path), "image_id": 1, "height": h, "width": w,
        "annotations": [{"bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_mode": 1, "category_id": 3, "iscrowd": 0}],
    }


def test_flip_maps_boxes_and_pixels_exactly(tmp_path):
    d = _write_box_image(tmp_path / "a.png")
    mapper = RTDETRDatasetMapper(is_train=True, image_size=(60, 80), flip_p=1.0)
    out = mapper(d, strong_augment=False)  # flip + identity resize
    assert out["instances"].gt_boxes.tensor.tolist() == [[80 - 35, 15, 80 - 10, 45]]
    assert out["instances"].gt_classes.tolist() == [3]
    img = np.asarray(Image.open(d["file_name"]))
    assert torch.equal(out["image"], torch.from_numpy(img[:, ::-1].copy()).permute(2, 0, 1))
    assert (out["height"], out["width"], out["image_id"]) == (60, 80, 1)


def test_boxes_follow_pixels_through_strong_augmentation(tmp_path):
    """Zoom-out, IoU crop, flip and resize: the box stays on the white rectangle."""
    d = _write_box_image(tmp_path / "a.png")
    mapper = RTDETRDatasetMapper(is_train=True, image_size=(64, 64), photometric_p=0.0, zoom_out_p=0.5, iou_crop_p=0.8)
    seen_crop = seen_empty = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = mapper(d, image_size=(64, 64))
        img, inst = out["image"], out["instances"]
        assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
        boxes = inst.gt_boxes.tensor
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 64).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
        bright = (img.float().mean(0) > 127).nonzero()
        if len(boxes) == 0:
            seen_empty += 1  # the crop kept the centre of the box out
            continue
        ys, xs = bright[:, 0].float(), bright[:, 1].float()
        x0, y0, x1, y1 = boxes[0].tolist()
        # the bright pixels are where the box says (resize blurs edges by ~1 px)
        assert abs(xs.min() - x0) <= 1.5 and abs(xs.max() + 1 - x1) <= 1.5
        assert abs(ys.min() - y0) <= 1.5 and abs(ys.max() + 1 - y1) <= 1.5
        seen_crop += int(x1 - x0 > 25 * 64 / 80 + 2)  # magnified: a crop happened
    assert seen_crop > 0


def test_iou_crop_probability_and_empty_boxes():
    from torchvision import tv_tensors
    img = tv_tensors.Image(torch.zeros(3, 20, 20, dtype=torch.uint8))
    empty = {"image": img, "boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(20, 20)),
             "labels": torch.zeros(0, dtype=torch.int64)}
    assert RandomIoUCrop(p=1.0)(empty)["image"].shape == (3, 20, 20)  # no boxes: unchanged, no endless search
    one = dict(empty, boxes=tv_tensors.BoundingBoxes(torch.tensor([[2.0, 2, 18, 18]]), format="XYXY", canvas_size=(20, 20)),
               labels=torch.tensor([0]))
    assert RandomIoUCrop(p=0.0)(one)["image"].shape == (3, 20, 20)


def test_stop_aug_pipeline_keeps_only_flip_and_resize():
    mapper = RTDETRDatasetMapper(is_train=True, image_size=(32, 32))
    strong = [type(t) for t in mapper.transforms(strong_augment=True).transforms]
    weak = [type(t) for t in mapper.transforms(strong_augment=False).transforms]
    assert strong == [RandomPhotometricDistort, T.RandomZoomOut, RandomIoUCrop, T.SanitizeBoundingBoxes,
                      T.RandomHorizontalFlip, T.Resize, T.SanitizeBoundingBoxes]
    assert weak == [T.RandomHorizontalFlip, T.Resize, T.SanitizeBoundingBoxes]
    assert mapper.transforms().transforms[0].p == 0.5 and mapper.transforms().transforms[2].p == 0.8
    assert mapper.transforms().transforms[3].min_size == 1.0


def test_test_mapper_resizes_to_eval_size_without_targets(tmp_path):
    d = _write_box_image(tmp_path / "a.png")
    out = RTDETRDatasetMapper(is_train=False, image_size=(40, 50))(d)
    assert out["image"].shape == (3, 40, 50) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"]) == (60, 80) and "instances" not in out


def test_crowd_and_empty_images_in_mapper(tmp_path):
    d = _write_box_image(tmp_path / "a.png")
    d["annotations"][0]["iscrowd"] = 1
    out = RTDETRDatasetMapper(is_train=True, image_size=32)(d)
    assert len(out["instances"]) == 0 and out["instances"].gt_boxes.tensor.shape == (0, 4)
    assert out["instances"].gt_classes.dtype == torch.int64
