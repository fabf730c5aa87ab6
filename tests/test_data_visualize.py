"""tools/visualize_data.py draws augmented training samples to PNG files; data configs load."""
import subprocess
import sys

from PIL import Image


from mlla_rtdetr.engine import load_config

from data_utils import make_tiny_coco, unique_name


def test_visualize_data_writes_pngs(tmp_path, repo_root):
    j, root = make_tiny_coco(tmp_path, num_images=6)
    out = tmp_path / "vis"
    cmd = [
        sys.executable, "tools/visualize_data.py", "--config-file", "configs/common/data/coco_detection.py",
        "--num-images", "3", "--output-dir", str(out),
        f"dataloader.train.dataset.names={unique_name('vis')}", f"dataloader.train.dataset.json_file={j}",
        f"dataloader.train.dataset.image_root={root}", "dataloader.train.total_batch_size=2",
        "dataloader.train.mapper.image_size=[64,64]", "dataloader.train.multiscale_sizes=null",
    ]
    res = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    files = sorted(out.glob("*.png"))
    assert len(files) == 3
    img = Image.open(files[0])
    assert img.size == (64, 64) and img.mode == "RGB"
    help_ = subprocess.run([sys.executable, "tools/visualize_data.py", "--help"], cwd=repo_root,
                           capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "--num-images" in help_.stdout


def test_data_configs_expose_the_api():
    for rel, size, train_name, val_name in [
        ("common/data/coco_detection.py", [640, 640], "coco_2017_train", "coco_2017_val"),
        ("common/data/synthetic_detection.py", [256, 256], "synthetic_shapes_train", "synthetic_shapes_val"),
    ]:
        cfg = load_config(rel)
        dl = cfg.dataloader
        assert dl.train.dataset.names == train_name and dl.test.dataset.names == val_name
        assert list(dl.train.mapper.image_size) == size and list(dl.test.mapper.image_size) == size
        assert dl.train.total_batch_size == 16 and dl.train.stop_aug_epoch > 0
        assert dl.train.multiscale_sizes.base == size[0]
        assert dl.evaluator.dataset_name == val_name  # follows the test set
