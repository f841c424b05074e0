"""Int8 quantisation (dwpose_ctrl.quantize): valid models, same interface, close outputs, clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_graphs import pose_like

from dwpose_ctrl.quantize import calibration_batches, model_role, quantize_for_pipeline, quantize_model


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory):
    return pose_like(tmp_path_factory.mktemp("quant") / "pose.onnx", input_size=(64, 48))


def _run(path, batch):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def test_model_role(tiny_pose, yolox_nano_path):
    assert model_role(tiny_pose) == "pose"
    assert model_role(yolox_nano_path) == "detector"


def test_static_quantisation_keeps_the_interface_and_stays_close(tiny_pose, tmp_path, portraits_dir):
    images = sorted(portraits_dir.iterdir())
    batches = calibration_batches(tiny_pose, images)
    assert [b.shape for b in batches] == [(1, 3, 64, 48)] * len(images)
    quantized = quantize_model(tiny_pose, tmp_path / "pose_int8.onnx", batches)
    graph = onnx.load(str(quantized)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    assert [o.name for o in graph.output] == [o.name for o in onnx.load(str(tiny_pose)).graph.output]
    float_x, float_y = _run(tiny_pose, batches[0])
    int8_x, int8_y = _run(quantized, batches[0])
    assert int8_x.shape == float_x.shape and int8_y.shape == float_y.shape
    # A random network's logits are flat, so single int8 logits can move by a fifth of the
    # largest one (onnxruntime 1.32: up to 0.33); the logits as a whole must still follow the
    # float32 ones (measured: correlation 0.996, mean error 8-10 % of the mean magnitude).
    for int8, reference in ((int8_x, float_x), (int8_y, float_y)):
        assert np.corrcoef(int8.ravel(), reference.ravel())[0, 1] > 0.98
        assert np.abs(int8 - reference).mean() < 0.15 * np.abs(reference).mean()


def test_detector_calibration_letterboxes_and_old_opsets_are_converted(
    yolox_nano_path, tmp_path, portraits_dir
):
    images = [portraits_dir / "grace_hopper.jpg"]
    batches = calibration_batches(yolox_nano_path, images)
    assert batches[0].shape == (1, 3, 416, 416)
    assert batches[0].max() <= 255 and (batches[0] == 114).any()
    quantized = quantize_for_pipeline(yolox_nano_path, tmp_path / "nano_int8.onnx", images)
    opset = next(o.version for o in onnx.load(str(quantized)).opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 13
    (raw,) = _run(quantized, batches[0])
    assert raw.shape == (1, 3549, 85)


def test_dynamic_quantisation_needs_no_calibration(tiny_pose, tmp_path):
    quantized = quantize_model(tiny_pose, tmp_path / "dyn.onnx", method="dynamic")
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 48)).astype(np.float32)
    assert _run(quantized, batch)[0].shape == _run(tiny_pose, batch)[0].shape


def test_the_model_is_published_from_a_scratch_folder_on_another_disk(tiny_pose, tmp_path, monkeypatch):
    import os
    import stat
    import tempfile

    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test folder")
    monkeypatch.setattr(tempfile, "tempdir", "/dev/shm")  # a rename from there fails (EXDEV)
    previous = os.umask(0o027)
    try:
        quantized = quantize_model(tiny_pose, tmp_path / "dyn.onnx", method="dynamic")
    finally:
        os.umask(previous)
    assert onnx.load(str(quantized)).graph.input[0].name == onnx.load(str(tiny_pose)).graph.input[0].name
    assert stat.S_IMODE(quantized.stat().st_mode) == 0o640
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dyn.onnx"]


def test_bad_arguments_are_refused(tiny_pose, tmp_path):
    with pytest.raises(ValueError, match="calibration batches"):
        quantize_model(tiny_pose, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="must differ"):
        quantize_model(tiny_pose, tiny_pose, method="dynamic")
    with pytest.raises(ValueError, match="method"):
        quantize_model(tiny_pose, tmp_path / "x.onnx", method="float8")
    with pytest.raises(FileNotFoundError):
        quantize_model(tmp_path / "missing.onnx", tmp_path / "x.onnx", method="dynamic")
