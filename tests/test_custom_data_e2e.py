"""Your own data, as a user runs it: the commands of the README section "Train on your data" on a
1-class dataset written to disk in the three layouts (COCO json, Pascal VOC, ultralytics YOLO),
then the same dataset through --num-gpus 2, tools/sweep.py and tools/submit.py --local, and every
data fault (missing file, undecodable file, unknown category id, class-count mismatch, missing
config) with its exit status and message.

The README commands are read from README.md and run in a folder that holds the datasets and links
to the repository's ``tools/``, ``projects/`` and ``configs/``, exactly as written, with ``$CFG``
set to the tiny recipe and size overrides appended to the training commands (64 px, 4 iterations)
so that each run takes seconds.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from data_utils import write_coco_dataset, write_voc_dataset, write_yolo_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = "projects/mlla_rtdetr/configs/rtdetr_tiny_synthetic.py"
SMALL = [
    "dataloader.train.num_workers=0", "dataloader.train.stop_aug_epoch=0", "dataloader.train.total_batch_size=4",
    "dataloader.train.mapper.image_size=[64,64]", "dataloader.test.mapper.image_size=[64,64]",
    "model.encoder.eval_spatial_size=[64,64]", "model.decoder.eval_spatial_size=[64,64]",
    "train.max_iter=4", "train.eval_period=4", "train.checkpointer.period=2", "train.log_period=1",
]


def readme_commands() -> List[List[str]]:
    """The commands of README.md's "Train on your data" section (continuations joined, ``$CFG``
    expanded, comments and the ``CFG=`` line left out), as argument lists."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Train on your data", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip() if line.strip().startswith("#") else line.strip()
            if not line or line.startswith("CFG="):
                continue
            argv = shlex.split(line, comments=True)
            commands.append([TINY if a == "$CFG" else a for a in argv])
    return commands


def readme_command(*needles: str) -> List[str]:
    found = [c for c in readme_commands() if all(n in " ".join(c) for n in needles)]
    assert len(found) == 1, f"README: {len(found)} commands contain {needles}"
    return list(found[0])


def run(argv: List[str], cwd: Path, extra=(), timeout: int = 600) -> subprocess.CompletedProcess:
    assert argv[0] == "python"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, *argv[1:], *extra], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def user_error(proc: subprocess.CompletedProcess) -> str:
    """Exit status 2 with a message and no traceback; returns stderr."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A user's folder: the datasets of the README and links to the repository."""
    root = tmp_path_factory.mktemp("your_data")
    for name in ("tools", "projects", "configs"):
        (root / name).symlink_to(REPO / name)
    write_coco_dataset(root / "trees")
    write_voc_dataset(root / "trees_voc")
    write_yolo_dataset(root / "trees_yolo")
    return root


FORMATS = {  # README marker of the training command, output folder, images to predict on (how many)
    "coco": ("json_file=trees/train.json", "output/trees", "trees/images", 12),
    "voc": ("voc_root=trees_voc", "output/trees_voc", "trees_voc/JPEGImages", 12),
    "yolo": ("yolo_yaml=trees_yolo/data.yaml", "output/trees_yolo", "trees_yolo/images/val", 4),
}


@pytest.fixture(scope="module")
def trained(work) -> Dict[str, subprocess.CompletedProcess]:
    """The README's three training commands (4 iterations each)."""
    return {fmt: run(readme_command("train_net.py", marker), work, SMALL) for fmt, (marker, *_) in FORMATS.items()}


def test_readme_summary_commands(work):
    for needle, title in (("--json-file", "trees/train.json"), ("--voc-root", "trees_voc (train)"),
                          ("--yolo-yaml", "trees_yolo/data.yaml (val)")):
        out = ok(run(readme_command("dataset_summary.py", needle), work)).stdout
        images = 4 if "(val)" in title else 8
        assert f"Dataset {title}: {images} images, {images * 3 // 2} boxes, 1 class" in out, out
        assert "  problems: none" in out and "images without boxes: 0" in out


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_readme_train_eval_predict(work, trained, fmt):
    _, out_dir, images, num_images = FORMATS[fmt]
    ok(trained[fmt])
    out = work / out_dir
    assert "cannot be read" not in trained[fmt].stdout + trained[fmt].stderr
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [0, 1, 2, 3]
    assert all(m["data/bad_images"] == 0 for m in metrics if "total_loss" in m)
    config = (out / "config.yaml").read_text()
    assert config.count("class_names: [tree]") == 2  # recorded for train and test

    # README: --eval-only with the run's config.yaml
    argv = [a.replace("output/trees", out_dir) for a in readme_command("--eval-only")]
    ok(run(argv, work))
    results = json.load(open(out / "eval_only_results.json"))["results"]
    assert results["images_ema"] == {"evaluated": 4, "skipped": 0} and "AP" in results["bbox_ema"]
    trained_ap = json.load(open(out / "eval_results.json"))["results"]["bbox_ema"]["AP"]
    assert results["bbox_ema"]["AP"] == pytest.approx(trained_ap, abs=1e-9)

    # README: tools/predict.py with the run's config.yaml on the val images: class names from the run
    argv = [a.replace("output/trees", out_dir).replace("trees/images", images) for a in readme_command("predict.py")]
    ok(run(argv + ["--score-threshold", "0"], work))
    detections = json.load(open(out / "predictions" / "detections.json"))
    assert detections["class_names"] == ["tree"] and len(detections["results"]) == num_images
    first = next(iter(detections["results"].values()))["detections"]
    assert first and {d["class_name"] for d in first} == {"tree"}


def test_readme_resume_continues_the_run(work, trained):
    ok(trained["coco"])
    ok(run(readme_command("--resume"), work, ["train.max_iter=6"]))
    out = work / "output" / "trees"
    log = (out / "log.txt").read_text()
    assert "Resuming from" in log and "model_final.pth" in log
    assert json.load(open(out / "eval_results.json"))["iteration"] == 6  # logged at max_iter
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["trainer"]["iteration"] == 5

    # an unreadable checkpoint is a user error: --eval-only on a truncated copy
    data = (out / "model_final.pth").read_bytes()
    (out / "model_cut.pth").write_bytes(data[: len(data) // 3])
    argv = [a.replace("model_final.pth", "model_cut.pth") for a in readme_command("--eval-only")]
    err = user_error(run(argv, work))
    assert "Checkpoint 'output/trees/model_cut.pth' cannot be read" in err and "truncated" in err


def _absolute(argv: List[str], work: Path) -> List[str]:
    """Dataset paths of a README command made absolute (the sweep runs train_net elsewhere)."""
    out = []
    for a in argv:
        key, sep, value = a.partition("=")
        if sep and value.startswith(("trees", "output/")):
            a = f"{key}={work / value}"
        out.append(a)
    return out


def test_two_processes_on_the_custom_dataset(work):
    argv = [a.replace("output/trees", "output/trees_ddp") for a in readme_command("train_net.py", "json_file=trees/")]
    ok(run(argv[:2] + ["--num-gpus", "2"] + argv[2:], work, SMALL))
    out = work / "output" / "trees_ddp"
    assert (out / "log.txt.rank1").is_file()
    assert json.load(open(out / "eval_results.json"))["results"]["images_ema"] == {"evaluated": 4, "skipped": 0}


def test_sweep_and_submit_on_the_custom_dataset(work):
    data = [a for a in _absolute(readme_command("train_net.py", "json_file=trees/train.json"), work)
            if a.startswith(("dataloader.", "model."))]
    sweep_dir = work / "output" / "sweep"
    ok(run(["python", "tools/sweep.py", "--config-file", TINY, "--set", "train.seed=0", "--output-dir",
            str(sweep_dir), *data, *SMALL], work))
    run_dir = json.load(open(sweep_dir / "sweep.json"))["runs"][0]["output_dir"]
    results = json.load(open(Path(run_dir) / "eval_results.json"))["results"]
    assert results["images_ema"]["evaluated"] == 4
    out = work / "output" / "submit"
    proc = ok(run(["python", "tools/submit.py", "--local", "--gpus-per-node", "0", "--wait", "--config-file", TINY,
                   *data, *SMALL, f"train.output_dir={out}"], work))
    assert "finished" in proc.stdout and (out / "model_final.pth").is_file()


# ----------------------------------------------------------------------------- data faults
def _coco_command(work: Path, dataset: str, out: str) -> List[str]:
    argv = readme_command("train_net.py", "json_file=trees/train.json")
    return [a.replace("trees/", f"{dataset}/").replace("output/trees", out) for a in argv]


def test_missing_files_listed_before_anything_starts(work):
    root = work / "trees_missing"
    jsons = write_coco_dataset(root)
    data = json.loads(jsons["train"].read_text())
    data["images"] += [{"id": 100 + i, "file_name": f"lost_{i}.jpg", "height": 64, "width": 80} for i in range(23)]
    jsons["train"].write_text(json.dumps(data))
    (root / "images" / "val_2.jpg").unlink()
    err = user_error(run(_coco_command(work, "trees_missing", "output/missing"), work, SMALL))
    assert "dataloader.train.dataset: Dataset 'trees_train': 23 of 31 image files do not exist:" in err
    assert "trees_missing/images/lost_19.jpg (image_id=119)" in err and "lost_20" not in err
    assert "... and 3 more" in err
    assert "dataloader.test.dataset: Dataset 'trees_val': 1 of 4 image files do not exist:" in err
    assert "trees_missing/images/val_2.jpg (image_id=3)" in err
    assert not (work / "output" / "missing").exists()  # stopped before anything was built


def test_unknown_category_id_and_class_count_mismatch(work):
    root = work / "trees_unknown"
    jsons = write_coco_dataset(root)
    data = json.loads(jsons["val"].read_text())
    data["annotations"][1]["category_id"] = 7
    jsons["val"].write_text(json.dumps(data))
    err = user_error(run(_coco_command(work, "trees_unknown", "output/unknown"), work, SMALL))
    assert "val.json: 1 annotation(s) use a category id that is not in 'categories' (known ids: 1 (tree))" in err
    assert "annotations[1] (id=2, image_id=" in err and "has category_id 7" in err

    argv = [a for a in readme_command("train_net.py", "json_file=trees/train.json") if a != "model.num_classes=1"]
    err = user_error(run(argv, work, SMALL))
    assert "model.num_classes=5" in err and "have 1 class (tree)" in err
    assert err.rstrip().endswith("Add this override:\n  model.num_classes=1")


def test_missing_config_and_annotation_files(work):
    argv = readme_command("train_net.py", "json_file=trees/train.json")
    argv[argv.index(TINY)] = TINY.replace("synthetic", "synthtic")
    err = user_error(run(argv, work, SMALL))
    assert "rtdetr_tiny_synthtic.py" in err and "rtdetr_tiny_synthetic.py" in err

    argv = [a.replace("trees/val.json", "trees/vall.json") for a in readme_command("train_net.py", "json_file=trees/")]
    err = user_error(run(argv, work, SMALL))
    assert "dataloader.test.dataset" in err and "trees/vall.json" in err
    argv = [a.replace("trees_yolo/data.yaml", "trees_yolo/dataa.yaml") for a in readme_command("yolo_yaml=")]
    err = user_error(run(argv, work, SMALL))
    assert "dataloader.train.dataset" in err and "trees_yolo/dataa.yaml" in err


def test_undecodable_images_skipped_counted_and_resumable(work):
    root = work / "trees_bad"
    write_coco_dataset(root)
    jpg = root / "images" / "train_3.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])  # truncated JPEG
    (root / "images" / "train_6.jpg").write_bytes(b"")  # zero bytes
    (root / "images" / "val_1.jpg").write_text("not an image")  # wrong content for its extension

    # default share (1%): the first unreadable image stops the run, after a checkpoint
    err = user_error(run(_coco_command(work, "trees_bad", "output/bad"), work, SMALL))
    assert "training images" in err and "cannot be read, more than dataloader.train.max_bad_image_share=0.01" in err
    stopped = re.search(r"The checkpoint of iteration (\d+) is saved \((.*?)\)", err)
    out = work / "output" / "bad"
    assert stopped and (work / stopped.group(2)).is_file()
    assert (out / "last_checkpoint").read_text().strip() == Path(stopped.group(2)).name
    assert not (out / "model_final.pth").exists()

    # resumed with a larger share: finishes as a run that allowed it from the start (4 workers)
    allow = ["dataloader.train.max_bad_image_share=0.5"]
    ok(run(_coco_command(work, "trees_bad", "output/bad")[:2] + ["--resume"]
           + _coco_command(work, "trees_bad", "output/bad")[2:], work, SMALL + allow))
    full = work / "output" / "bad_full"
    ok(run(_coco_command(work, "trees_bad", "output/bad_full"), work,
           SMALL + allow + ["dataloader.train.num_workers=2"]))
    a = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    b = torch.load(full / "model_final.pth", map_location="cpu", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["trainer"]["hooks"]["BadImageHook"] == b["trainer"]["hooks"]["BadImageHook"]
    assert sorted(a["trainer"]["hooks"]["BadImageHook"]["bad_images"]) == [
        "trees_bad/images/train_3.jpg", "trees_bad/images/train_6.jpg"]

    metrics = [json.loads(line) for line in open(full / "metrics.json")]
    assert [m["data/bad_images"] for m in metrics if "total_loss" in m][-1] == 2
    log = (full / "log.txt").read_text()
    assert log.count("skips an image that cannot be read (replaced") == 2  # once per image, visited twice
    results = json.load(open(full / "eval_results.json"))["results"]
    assert results["images_ema"] == {"evaluated": 3, "skipped": 1}
    assert "Skipping an image that cannot be read (not evaluated): Cannot decode image trees_bad/images/val_1.jpg" in log


def test_voc_and_yolo_data_configs(work):
    """configs/common/data/voc_detection.py reads the standard VOC2007+2012 layout through
    detectron2's builtin names (DETECTRON2_DATASETS); yolo_detection.py takes one data.yaml."""
    root = work / "d2_datasets"
    classes = ("dog", "person")  # among the 20 VOC classes of detectron2's builtin names
    write_voc_dataset(root / "VOC2007", class_names=classes, splits=(("trainval", 2), ("test", 2)))
    write_voc_dataset(root / "VOC2012", class_names=classes, splits=(("trainval", 3),))
    env = dict(os.environ, DETECTRON2_DATASETS=str(root))
    proc = subprocess.run([sys.executable, "tools/dataset_summary.py", "--config-file",
                           "configs/common/data/voc_detection.py"], cwd=work, env=env, capture_output=True, text=True)
    out = ok(proc).stdout
    assert "Dataset dataloader.train.dataset voc_2007_trainval: 2 images" in out
    assert "Dataset dataloader.train.dataset voc_2012_trainval: 3 images" in out
    assert "Dataset dataloader.test.dataset voc_2007_test: 2 images" in out and "20 classes" in out
    out = ok(run(["python", "tools/dataset_summary.py", "--config-file", "configs/common/data/yolo_detection.py",
                  "dataloader.train.dataset.yolo_yaml=trees_yolo/data.yaml"], work)).stdout
    assert "dataloader.train.dataset yolo_train: 8 images, 12 boxes, 1 class" in out
    assert "dataloader.test.dataset yolo_val: 4 images, 6 boxes, 1 class" in out
    err = user_error(run(["python", "tools/dataset_summary.py", "--config-file",
                          "configs/common/data/yolo_detection.py"], work))
    assert "dataloader.train.dataset.yolo_yaml required by the config" in err
