"""Bad model files and model arguments: what is used, what is refused, and the one-line messages.

Issue 13: a registered name shadowed by a file in the current folder (item 4), empty, unreadable
and corrupt files and the converter's inputs (items 13 and 18), malformed pose models (item 17).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re

import numpy as np
import pytest
import torch
from onnx_graphs import constant_yolox, declared_detector, declared_pose, peak_pose, simcc_peaks, yolox_raw
from PIL import Image

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.convert import main as convert_main
from dwpose_ctrl.models.backend import load_torch_backend
from dwpose_ctrl.models.checkpoints import UnsafeCheckpointError, load_model, read_weight_file
from dwpose_ctrl.models.export import export_safetensors
from dwpose_ctrl.models.rtmpose import build_rtmpose
from dwpose_ctrl.weights import REGISTRY, ModelFile, ModelFileError, resolve_model


class NotATensor:
    def __init__(self, value):
        self.value = value


pytestmark = pytest.mark.usefixtures("hub_offline")  # no test here may reach the network


@pytest.fixture()
def models(tmp_path, monkeypatch):
    """A tiny detector and pose model, the pose model registered (verified) as ``tiny-pose``."""
    folder = tmp_path / "models"
    folder.mkdir()
    det = constant_yolox(folder / "tiny_det.onnx", yolox_raw({}, (64, 64)), (64, 64))
    pose = peak_pose(
        folder / "tiny_pose.onnx", *simcc_peaks(np.zeros(133, int), np.zeros(133, int), (64, 48))
    )
    data = pose.read_bytes()
    entry = ModelFile(
        "tiny-pose", "pose", "test-org/tiny", pose.name, len(data), hashlib.sha256(data).hexdigest()
    )
    monkeypatch.setitem(REGISTRY, "tiny-pose", entry)
    return {"detector": det, "pose": pose, "folder": folder}


# --- item 4: a registered name is never replaced by a file of that name in the current folder ---


def test_a_file_named_like_a_registered_model_does_not_replace_it(models, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    impostor = peak_pose(cwd / "tiny-pose", *simcc_peaks(np.ones(133, int), np.ones(133, int), (64, 48)))
    with pytest.warns(UserWarning, match=r"registered pose model tiny-pose, which is used.*\./tiny-pose"):
        chosen = resolve_model("tiny-pose", "pose", local_dir=models["folder"])
    assert chosen == models["folder"] / "tiny_pose.onnx"
    # written unambiguously as a path, the file is used
    assert resolve_model("./tiny-pose", "pose") == pathlib.Path("./tiny-pose")
    assert resolve_model(pathlib.Path("tiny-pose"), "pose") == pathlib.Path("tiny-pose")
    assert resolve_model(str(impostor), "pose") == impostor


def test_a_file_named_yolox_l_in_the_current_folder_is_not_the_official_detector(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "yolox_l").write_bytes(b"not the sha256-verified model")
    with (
        pytest.warns(UserWarning, match="registered detector model yolox_l"),
        pytest.raises(ModelFileError, match=r"model files missing: yolox_l\.onnx \(looked in"),
    ):
        resolve_model("yolox_l", "detector")


# --- items 13 and 18: empty, unreadable and corrupt model files ---


def test_a_zero_byte_onnx_model_is_named_empty(models, tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"empty\.onnx is empty \(0 bytes\)"):
        DWposeDetector(det_model=models["detector"], pose_model=empty)
    detector = DWposeDetector(det_model=models["detector"], pose_model=models["pose"])
    detector.pose_model_path = empty  # emptied after it was resolved: the runtime says the same
    with pytest.raises(ModelFileError, match=r"is empty \(0 bytes\)"):
        _ = detector.pose_backend.input_size


def test_zero_byte_model_through_the_cli_is_one_error_line(models, tmp_path, capsys):
    from dwpose_ctrl.cli import main

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    photo = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(photo)
    argv = [str(photo), "-o", str(tmp_path / "out"), "-q", "--det-model", str(models["detector"])]
    assert main([*argv, "--pose-model", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dwpose-render: error: ") and "is empty (0 bytes)" in err[0]


def _deny_reading(monkeypatch, denied: pathlib.Path) -> None:
    """Make opening ``denied`` fail as it does for a file without read permission (even for root)."""
    original = pathlib.Path.open

    def guarded_open(self, *args, **kwargs):
        if os.path.abspath(self) == os.path.abspath(denied):
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", guarded_open)


def test_an_unreadable_model_file_is_not_called_corrupt(models, monkeypatch):
    _deny_reading(monkeypatch, models["pose"])
    for model in (models["pose"], "tiny-pose"):
        with pytest.raises(ModelFileError, match="cannot be read: permission denied") as refused:
            resolve_model(model, "pose", local_dir=models["folder"])
        assert "corrupt" not in str(refused.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files without permission")
def test_an_unreadable_model_file_with_real_permissions(models):
    models["pose"].chmod(0)
    try:
        with pytest.raises(ModelFileError, match="permission denied"):
            DWposeDetector(det_model=models["detector"], pose_model=models["pose"])
    finally:
        models["pose"].chmod(0o644)


def test_pickle_refusal_names_a_command_that_exists(tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "extra": NotATensor(1)}, path)
    with pytest.raises(UnsafeCheckpointError) as refused:
        read_weight_file(path)
    message = str(refused.value)
    assert f"python -m dwpose_ctrl.convert {path} --out DIR --allow-unsafe-pickle" in message
    assert "CLI: --allow-unsafe-pickle" not in message  # dwpose-render has no such option


# --- item 13: the converter's bad inputs give one `error:` line and exit 2 ---


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    path = folder / "good.pth"
    torch.save({"state_dict": build_rtmpose("t", (64, 64)).state_dict()}, path)
    return path


def _converter_error(capsys, argv) -> str:
    assert convert_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("python -m dwpose_ctrl.convert: error: ")
    return lines[0]


def test_converter_on_truncated_empty_incomplete_and_corrupt_files(tiny_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "out")
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "zero.pth").write_bytes(b"")
    state = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    del state["head.gau.o.weight"]
    torch.save(state, tmp_path / "missing.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    (tmp_path / "bad.onnx").write_bytes(b"garbage" * 10)
    (tmp_path / "zero.onnx").write_bytes(b"")
    expected = {
        "truncated.pth": r"truncated\.pth as a PyTorch checkpoint: it is truncated or corrupt",
        "zero.pth": r"zero\.pth is empty \(0 bytes\)",
        "missing.pth": r"does not fit the RTMPose its shapes describe \(1 missing: head\.gau\.o\.weight\)",
        "bad.safetensors": r"bad\.safetensors as a safetensors file: it is truncated or corrupt",
        "bad.onnx": r"bad\.onnx as an ONNX model: it is truncated, corrupt or not ONNX",
        "zero.onnx": r"zero\.onnx is empty \(0 bytes\)",
    }
    for name, message in expected.items():
        line = _converter_error(capsys, [str(tmp_path / name), "--out", out])
        assert re.search(message, line), line
    assert not (tmp_path / "out").exists()


def test_converter_refuses_an_out_file_and_unsupported_opsets(tiny_checkpoint, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    line = _converter_error(capsys, [str(tiny_checkpoint), "--out", str(afile)])
    assert "--out" in line and "is a file; give a folder" in line
    assert afile.read_text() == "x"
    for opset in ("99", "5", "abc"):
        with pytest.raises(SystemExit) as exited:
            convert_main([str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--opset", opset])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "error: argument --opset" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# --- item 17: malformed pose models are refused when opened, naming what is wrong ---


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"input_size": (0, 0)}, "the pose model.s input height is 0 pixels; a pose model takes 8 to 2048"),
        ({"input_size": (100_000, 100_000)}, "the pose model.s input height is 100000 pixels"),
        ({"input_size": (64, 48), "keypoints": 17}, "simcc_x gives 17 keypoints.*133 COCO-WholeBody"),
        ({"input_size": (64, 48), "bins": (100, 128)}, "simcc_x has 100 bins but the input width is 48"),
        ({"input_size": (64, 48), "bins": (96, 64)}, "simcc_y has 64 bins but the input height is 64"),
    ],
)
def test_malformed_pose_models_are_refused_when_opened(models, tmp_path, shape, message):
    bad = declared_pose(tmp_path / "bad_pose.onnx", **shape)
    detector = DWposeDetector(det_model=models["detector"], pose_model=bad)
    with pytest.raises(ModelFileError, match=rf"bad_pose\.onnx: {message}"):
        _ = detector.pose_backend.input_size


def test_a_well_formed_declared_pose_model_opens(models, tmp_path):
    good = declared_pose(tmp_path / "good_pose.onnx", (64, 48))
    assert DWposeDetector(det_model=models["detector"], pose_model=good).pose_backend.input_size == (64, 48)


def test_torch_backend_refuses_a_body_only_pose_model(tmp_path):
    path = export_safetensors(build_rtmpose("t", (64, 64), 17), tmp_path / "body17.safetensors")
    assert load_model(path).num_keypoints == 17  # the converter still reads it
    with pytest.raises(ModelFileError, match=r"body17\.safetensors: simcc_x gives 17 keypoints"):
        load_torch_backend(path, "pose")


@pytest.mark.parametrize(
    ("input_size", "anchors", "message"),
    [
        ((0, 0), 1, "the detector's input height is 0 pixels; a YOLOX takes 32 to 4096"),
        ((100_000, 100_000), 1, "the detector's input height is 100000 pixels"),
        ((64, 64), 85, "the detector gives 85 anchors but a YOLOX at 64x64 has 84"),
    ],
)
def test_malformed_detectors_are_refused_when_opened(models, tmp_path, input_size, anchors, message):
    bad = declared_detector(tmp_path / "bad_det.onnx", input_size, anchors)
    detector = DWposeDetector(det_model=bad, pose_model=models["pose"])
    with pytest.raises(ModelFileError, match=rf"bad_det\.onnx: {message}"):
        _ = detector.det_backend.input_size


def test_quantize_cli_on_bad_model_files_is_one_error_line(tmp_path, capsys):
    from dwpose_ctrl.quantize import main as quantize_main

    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "bad.onnx").write_bytes(b"garbage" * 10)
    for name, message in (
        ("empty.onnx", r"is empty \(0 bytes\)"),
        ("bad.onnx", "truncated, corrupt or not ONNX"),
    ):
        with pytest.raises(SystemExit) as exited:
            quantize_main([str(tmp_path / name), str(tmp_path / "out.onnx"), "--method", "dynamic"])
        assert exited.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("python -m dwpose_ctrl.quantize: error: ")
        assert re.search(message, lines[0])
    assert not (tmp_path / "out.onnx").exists()
