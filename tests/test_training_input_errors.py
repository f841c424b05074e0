"""Bad training inputs are found before the first step and reported as one ``error:`` line (exit 2).

Issue 13 item 12 (the dataset is checked up front: every missing, unreadable or corrupt image and
non-finite box at once; ``--skip-bad-samples`` leaves them out), item 13 (annotation JSON, config
overrides and resume checkpoints) and item 18 (a NaN box).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from training.__main__ import main
from training.config import apply_overrides, load_config
from training.data.checks import DatasetError, check_instances
from training.data.dataset import read_rgb
from training.data.instances import load_coco_wholebody
from training.data.synthetic import SyntheticConfig, generate_synthetic_dataset
from training.engine import build_train_dataset


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_synthetic_dataset(root / "synthetic", SyntheticConfig(num_images=6, image_size=(96, 96), seed=0))
    return root


@pytest.fixture()
def data_root(clean_data, tmp_path) -> Path:
    """A fresh copy of the synthetic set for a test to break."""
    root = tmp_path / "data"
    shutil.copytree(clean_data, root)
    return root


def _annotations(root: Path) -> dict:
    return json.loads((root / "synthetic" / "annotations.json").read_text())


def _write_annotations(root: Path, data: dict) -> None:
    (root / "synthetic" / "annotations.json").write_text(json.dumps(data))


def _config(root: Path, *overrides: str):
    base = [f"data.data_root={str(root)!r}", "data.val=None", "data.batch_size=2", "data.num_workers=0"]
    return apply_overrides(load_config("tiny_synthetic"), [*base, *overrides])


def _break_dataset(root: Path) -> dict:
    """One of each: a missing image, a corrupt image, a NaN box, a NaN keypoint, a text bbox."""
    data = _annotations(root)
    images = {image["id"]: image["file_name"] for image in data["images"]}
    (root / "synthetic" / images[2]).unlink()
    (root / "synthetic" / images[3]).write_bytes(b"\xff\xd8 not really a JPEG")
    first, last = data["annotations"][0], data["annotations"][-1]
    first["bbox"] = [float("nan"), 1.0, 20.0, 30.0]
    nan_keypoint = next(a for a in data["annotations"][1:-1] if a["image_id"] not in (2, 3))
    nan_keypoint["keypoints"][0] = float("nan")
    last["bbox"] = "abc"
    _write_annotations(root, data)
    return {
        "missing": images[2],
        "corrupt": images[3],
        "nan": first["id"],
        "nan_keypoint": nan_keypoint["id"],
        "text": last["id"],
    }


def _train_argv(root: Path, tmp_path: Path, *extra: str, validate: bool = False) -> list[str]:
    overrides = [
        f"data.data_root={str(root)!r}",
        "data.val.annotation_file='synthetic/val.json'" if validate else "data.val=None",
        "data.num_workers=0",
        "data.batch_size=2",
        "schedule.max_epochs=1",
    ]
    argv = ["train", "--config", "tiny_synthetic", "--device", "cpu", "--no-progress"]
    argv += ["--work-dir", str(tmp_path / "work")]
    for override in overrides:
        argv += ["--set", override]
    return [*argv, *extra]


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m training train: error: ")
    return lines[0]


# --- item 12 (and the NaN box of item 18): every bad sample, before the first step ---


def test_every_bad_sample_is_reported_at_once(data_root):
    broken = _break_dataset(data_root)
    with pytest.raises(DatasetError) as refused:
        build_train_dataset(_config(data_root))
    message = str(refused.value)
    assert message.startswith("5 bad sample(s) in the training data: ")
    assert f"{broken['missing']}: the image file is missing" in message
    assert f"{broken['corrupt']}: the image file is corrupt or not an image" in message
    assert f"annotation {broken['nan']} has a box that is not finite" in message
    assert f"annotation {broken['nan_keypoint']} has keypoints that are NaN or infinite" in message
    assert f"annotation {broken['text']!r}" in message and "'bbox' must be 4 numbers" in message
    assert message.endswith(
        "fix them, or pass --skip-bad-samples (Python: skip_bad_samples=True) to drop them"
    )


def test_skip_bad_samples_leaves_them_out_with_a_warning(data_root, clean_data):
    everything = len(build_train_dataset(_config(clean_data)))
    broken = _break_dataset(data_root)
    with pytest.warns(
        UserWarning, match=r"5 bad sample\(s\).*--skip-bad-samples: these samples are left out"
    ):
        dataset = build_train_dataset(_config(data_root), skip_bad_samples=True)
    paths = {Path(instance.image_path).name for instance in dataset.instances}
    assert Path(broken["missing"]).name not in paths and Path(broken["corrupt"]).name not in paths
    assert broken["nan"] not in {instance.annotation_id for instance in dataset.instances}
    dropped_with_images = sum(
        Path(instance.image_path).name in (Path(broken["missing"]).name, Path(broken["corrupt"]).name)
        for instance in build_train_dataset(_config(clean_data)).instances
    )
    assert len(dataset) == everything - dropped_with_images - 3


def test_an_image_lost_after_the_check_is_named_or_replaced(data_root):
    dataset = build_train_dataset(_config(data_root))
    victim = Path(dataset.instances[0].image_path)
    victim.unlink()
    with pytest.raises(
        ValueError, match=rf"cannot read image .*{victim.name}: the image file is missing.*--skip"
    ):
        dataset[0]
    dataset.skip_bad_samples = True
    with pytest.warns(UserWarning, match="the next sample is used instead"):
        image, *_ = dataset[0]
    assert image.shape == (3, 64, 64)


def test_a_corrupt_image_is_called_corrupt_not_missing(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 garbage")
    with pytest.raises(ValueError, match=r"corrupt\.jpg: the image file is corrupt or not an image"):
        read_rgb(str(corrupt))
    with pytest.raises(FileNotFoundError, match="the image file is missing"):
        read_rgb(str(tmp_path / "gone.jpg"))
    _, problems = check_instances([])
    assert problems == []


def test_the_cli_lists_bad_samples_and_exits_2(data_root, tmp_path, capsys):
    _break_dataset(data_root)
    assert main(_train_argv(data_root, tmp_path)) == 2
    line = _one_error_line(capsys)
    assert "5 bad sample(s) in the training data" in line and "--skip-bad-samples" in line
    assert not (tmp_path / "work" / "last.pth").exists()


@pytest.mark.slow
def test_the_cli_trains_past_bad_samples_when_asked(data_root, tmp_path, capsys):
    _break_dataset(data_root)
    with pytest.warns(UserWarning, match="bad sample"):
        assert main(_train_argv(data_root, tmp_path, "--skip-bad-samples")) == 0
    assert (tmp_path / "work" / "last.pth").exists()


# --- item 13: annotation files, overrides and resume checkpoints ---


def test_garbled_and_wrongly_typed_annotation_files_are_named(data_root, tmp_path, capsys):
    annotations = data_root / "synthetic" / "annotations.json"
    text = annotations.read_text()
    annotations.write_text(text[: len(text) // 2])
    assert main(_train_argv(data_root, tmp_path)) == 2
    line = _one_error_line(capsys)
    assert f"annotation file {annotations} is not valid JSON" in line and "truncated or garbled" in line
    data = json.loads(text)
    data["images"] = {"not": "a list"}
    annotations.write_text(json.dumps(data))
    assert main(_train_argv(data_root, tmp_path)) == 2
    assert f"{annotations}: 'images' must be a list, got dict" in _one_error_line(capsys)
    data = json.loads(text)
    data["images"][0]["id"] = "one"
    data["annotations"][-1]["keypoints"] = "none"
    annotations.write_text(json.dumps(data))
    with pytest.raises(
        DatasetError,
        match=r"2 bad sample\(s\).*image entry 0: is malformed.*'id' is 'one'.*'keypoints' must be a list",
    ):
        load_coco_wholebody(annotations, data_root / "synthetic")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=abc", "override 'optim.lr=abc': OptimConfig.lr is float; expected a number, got 'abc'"),
        ("data.batch_size=0", "override 'data.batch_size=0': data.batch_size must be >= 1, got 0"),
        ("data.batch_size=2.5", "DataConfig.batch_size is int; expected an integer, got 2.5"),
        ("optim.lr=-1", "optim.lr must be a positive number, got -1.0"),
        ("model.input_size=(64,)", "expected 2 values"),
    ],
)
def test_bad_overrides_are_one_error_line(clean_data, tmp_path, capsys, override, message):
    assert main([*_train_argv(clean_data, tmp_path), "--set", override]) == 2
    assert message in _one_error_line(capsys)


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "not a resume checkpoint"])
def test_unusable_resume_checkpoints_suggest_no_resume(clean_data, tmp_path, capsys, kind):
    work = tmp_path / "work"
    work.mkdir()
    last = work / "last.pth"
    if kind == "zero-byte":
        last.write_bytes(b"")
    elif kind == "not a resume checkpoint":
        torch.save({"state_dict": {"w": torch.ones(1)}}, last)
    else:
        torch.save({"task": {"w": torch.ones(1000)}, "epoch": 1}, last)
        last.write_bytes(last.read_bytes()[:3000])
    assert main(_train_argv(clean_data, tmp_path)) == 2
    line = _one_error_line(capsys)
    expected = {
        "zero-byte": "it is empty (0 bytes)",
        "truncated": "it is truncated or corrupt",
        "not a resume checkpoint": "it is not a resume checkpoint of this trainer",
    }[kind]
    assert f"cannot resume from {last}: {expected}" in line
    assert line.endswith("pass --no-resume to start over (it is overwritten), or use another --work-dir")


def test_a_config_name_means_the_shipped_config_not_a_file_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny_synthetic").write_text("raise SystemExit('this local file must not run')\n")
    assert load_config("tiny_synthetic").name == "tiny-synthetic"
    local = tmp_path / "mine.py"
    local.write_text("from training.config import TrainConfig\nCONFIG = TrainConfig(name='mine')\n")
    assert load_config("./mine.py").name == "mine"


def test_the_validation_set_is_checked_before_training_too(data_root, tmp_path, capsys):
    data = _annotations(data_root)
    data["images"][0]["file_name"] = "images/not-there.jpg"
    (data_root / "synthetic" / "val.json").write_text(json.dumps(data))
    assert main(_train_argv(data_root, tmp_path, validate=True)) == 2
    line = _one_error_line(capsys)
    assert (
        "1 bad sample(s) in the validation data" in line
        and "not-there.jpg: the image file is missing" in line
    )
    assert not (tmp_path / "work" / "train_log.csv").exists()  # stopped before the first step


def test_export_command_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["export", "--checkpoint", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "python -m training export: error: weight file" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(empty), "--out", str(afile)]) == 2
    assert "--out" in capsys.readouterr().err and afile.read_text() == "x"
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", str(empty), "--out", str(tmp_path / "o"), "--opset", "99"])
    assert "unsupported ONNX opset 99" in capsys.readouterr().err


def test_malformed_detection_results_name_the_entry(clean_data, tmp_path):
    from training.data.instances import load_detections

    annotations = clean_data / "synthetic" / "annotations.json"
    bbox_file = tmp_path / "dets.json"
    for entry, message in (
        ({"image_id": 1, "bbox": [0, 0, 10, 10]}, "detection 0 has no 'score' field"),
        ({"image_id": 1, "bbox": "abc", "score": 0.9}, "detection 0 is malformed"),
        ({"image_id": 999, "bbox": [0, 0, 1, 1], "score": 0.9}, "image_id 999, which the annotation file"),
    ):
        bbox_file.write_text(json.dumps([entry]))
        with pytest.raises(ValueError, match=message):
            load_detections(bbox_file, annotations, clean_data / "synthetic")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CONFIG = (\n", r"config file .*broken\.py has a syntax error at line 1"),
        ("x = 1\n", r"broken\.py must define CONFIG = TrainConfig"),
        ("raise RuntimeError('boom')\n", r"broken\.py failed while running: RuntimeError: boom"),
    ],
)
def test_broken_config_files_are_one_error_line(tmp_path, capsys, text, message):
    config = tmp_path / "broken.py"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--work-dir", str(tmp_path / "work")]) == 2
    assert re.search(message, _one_error_line(capsys))
