"""A missing optional dependency is one line naming the extra, never a raw ModuleNotFoundError."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx_graphs import constant_yolox, pose_like, yolox_raw

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.extras import MissingExtraError, require


def missing(monkeypatch, *modules: str) -> None:
    """Make ``import module`` fail as if the module were not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture()
def models(tmp_path):
    det = constant_yolox(tmp_path / "det.onnx", yolox_raw({}, (64, 64)), (64, 64))
    return det, pose_like(tmp_path / "pose.onnx")


def test_require_returns_the_module_or_names_the_extra(monkeypatch):
    assert require("json", "cpu", "anything") is sys.modules["json"]
    missing(monkeypatch, "ray")
    with pytest.raises(MissingExtraError) as caught:
        require("ray", "ray", "--engine ray")
    assert str(caught.value) == (
        "--engine ray needs the '[ray]' extra: pip install 'dwpose-ctrl[ray]' (ray is not installed)"
    )
    assert isinstance(caught.value, ImportError) and caught.value.extra == "ray"


def test_an_installed_module_failing_inside_keeps_its_own_error(monkeypatch, tmp_path):
    (tmp_path / "installed_but_broken.py").write_text("import ray\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    missing(monkeypatch, "ray")
    with pytest.raises(ModuleNotFoundError) as caught:
        require("installed_but_broken", "torch", "x")
    assert not isinstance(caught.value, MissingExtraError) and caught.value.name == "ray"


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_cli_torch_backend_ray_and_s3_without_their_extras(monkeypatch, models, tmp_path, capsys):
    from dwpose_ctrl.cli import main

    det, pose = models
    image = tmp_path / "in.png"
    image.write_bytes(b"")  # never read: every run below stops before the first item
    base = [str(image), "-o", str(tmp_path / "out"), "-q", "--det-model", str(det), "--pose-model", str(pose)]
    cases = [
        (["--backend", "torch"], ("torch",), "backend='torch' needs the '[torch]' extra"),
        (["--engine", "ray"], ("ray",), "--engine ray (the Ray engine) needs the '[ray]' extra"),
    ]
    for extra_args, modules, message in cases:
        with monkeypatch.context() as patch:
            missing(patch, *modules)
            assert main([*base, *extra_args]) == 2
        extra = message.split("'[")[1].split("]")[0]
        install = f"pip install 'dwpose-ctrl[{extra}]' ({modules[0]} is not installed)"
        assert one_line(capsys.readouterr().err) == f"dwpose-render: error: {message}: {install}"
    missing(monkeypatch, "s3fs")
    assert main(["s3://bucket/photos", "-o", str(tmp_path / "out"), "-q"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "dwpose-render: error: s3:// storage needs the '[ray]' extra: pip install 'dwpose-ctrl[ray]' "
        "(s3fs is not installed)"
    )


def test_no_runtime_installed_names_the_cpu_extra_before_any_model_download(monkeypatch, models, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    missing(monkeypatch, "onnxruntime", "torch")
    cpu_extra = r"needs the '\[cpu\]' extra: pip install 'dwpose-ctrl\[cpu\]'"
    for model_arguments in (models, ()):  # the official files are missing too: the runtime comes first
        with pytest.raises(MissingExtraError, match=cpu_extra):
            DWposeDetector(*model_arguments)


def test_onnxruntime_missing_when_a_session_is_created(monkeypatch, models):
    from dwpose_ctrl.runtime import OnnxBackend

    missing(monkeypatch, "onnxruntime")
    with pytest.raises(MissingExtraError, match=r"the onnxruntime backend .* needs the '\[cpu\]' extra"):
        _ = OnnxBackend(models[1]).session


def test_the_converter_without_torch(monkeypatch, tmp_path, capsys):
    from dwpose_ctrl.convert import main

    missing(monkeypatch, "torch")
    assert main([str(tmp_path / "model.pth"), "--out", str(tmp_path)]) == 2
    assert one_line(capsys.readouterr().err) == (
        "python -m dwpose_ctrl.convert: error: the converter (python -m dwpose_ctrl.convert) needs the "
        "'[torch]' extra: "
        "pip install 'dwpose-ctrl[torch]' (torch is not installed)"
    )


def test_training_commands_without_the_train_extra(monkeypatch, capsys):
    from training.__main__ import main

    missing(monkeypatch, "torch")
    assert main(["train", "--config", "tiny_synthetic"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "python -m training: error: the trainer needs the '[train]' extra: "
        "pip install 'dwpose-ctrl[train]' (torch is not installed)"
    )


def test_diffusers_helpers_and_examples_without_diffusers(monkeypatch, capsys):
    from dwpose_ctrl.diffusers_utils import control_tensor

    missing(monkeypatch, "torch", "diffusers")
    with pytest.raises(MissingExtraError, match=r"control_tensor needs the '\[diffusers\]' extra"):
        control_tensor(np.zeros((8, 8, 3), np.uint8))
    from pathlib import Path

    examples = str(Path(__file__).resolve().parents[1] / "examples")
    monkeypatch.syspath_prepend(examples)
    import example_utils

    def main():
        example_utils.load_pipeline(None)

    with pytest.raises(SystemExit) as caught:
        example_utils.run(main)
    assert caught.value.code == 2
    assert one_line(capsys.readouterr().err) == (
        "error: the diffusers examples needs the '[diffusers]' extra: pip install 'dwpose-ctrl[diffusers]' "
        "(diffusers is not installed)"
    )
    monkeypatch.delitem(sys.modules, "example_utils")


def test_quantisation_without_onnxruntime(monkeypatch, tmp_path, capsys):
    from dwpose_ctrl.quantize import main

    missing(monkeypatch, "onnxruntime")
    with pytest.raises(SystemExit) as caught:
        main([str(tmp_path / "pose.onnx"), str(tmp_path / "int8.onnx"), "--method", "dynamic"])
    assert caught.value.code == 2
    assert one_line(capsys.readouterr().err) == (
        "python -m dwpose_ctrl.quantize: error: int8 quantisation (onnxruntime's tools) needs the '[cpu]' "
        "extra: pip install 'dwpose-ctrl[cpu]' (onnxruntime is not installed)"
    )
