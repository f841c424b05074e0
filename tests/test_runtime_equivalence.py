"""backend="auto" on the CPU is onnxruntime bit for bit; the torch backend matches it end to end."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_graphs import pose_like
from PIL import Image

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.placement import CPU_PROVIDER, NetworkRuntime

IMAGES = ("000000001000.jpg", "000000196141.jpg")  # 12 and 4 persons found by the YOLOX-Nano


@pytest.fixture(scope="module")
def images(val5_dir) -> list[np.ndarray]:
    return [np.asarray(Image.open(val5_dir / name).convert("RGB")) for name in IMAGES]


def run(detector: DWposeDetector, images: list[np.ndarray]):
    """(persons of each image, default-size control map of each image)."""
    return detector.estimate_arrays(images), [detector(image, output_type="np") for image in images]


def test_auto_on_the_cpu_is_onnxruntime_bit_for_bit(yolox_nano_path, images, tmp_path):
    pose = pose_like(tmp_path / "pose.onnx", input_size=(256, 192))
    auto = DWposeDetector(yolox_nano_path, pose)
    auto_poses, auto_maps = run(auto, images)
    poses, maps = run(DWposeDetector(yolox_nano_path, pose, backend="onnxruntime"), images)
    assert [len(p) for p in poses] == [12, 4]
    for ours, reference in zip(auto_poses, poses, strict=True):
        np.testing.assert_array_equal(ours.boxes, reference.boxes)
        np.testing.assert_array_equal(ours.keypoints, reference.keypoints)
        np.testing.assert_array_equal(ours.scores, reference.scores)
        assert ours.box_scores == reference.box_scores
    for ours, reference in zip(auto_maps, maps, strict=True):
        np.testing.assert_array_equal(ours, reference)
    info = auto.runtime_info()
    assert info.requested_backend == "auto" and info.choice.backend == "onnxruntime"
    assert info.detector == info.pose == NetworkRuntime("onnxruntime", "cpu", "float32", (CPU_PROVIDER,))
    assert repr(auto).endswith(
        "device='cpu', backend='auto', dtype='float32', mode='default') "
        "[runs: onnxruntime on cpu, float32, providers ['CPUExecutionProvider']]"
    )


@pytest.mark.slow
def test_the_torch_backend_on_the_cpu_matches_onnxruntime_end_to_end(yolox_nano_path, images, tmp_path):
    """The same ONNX files (YOLOX-Nano, the mmpose-made RTMPose-t): boxes and keypoints within
    1e-5 of the image size (float32 rounding of pixel coordinates), scores within 1e-5, equal maps."""
    torch = pytest.importorskip("torch")
    from conftest import require_asset

    from dwpose_ctrl.models import build_rtmpose, export_onnx, load_state_dict

    model = build_rtmpose("t", (256, 192))
    model.load_state_dict(load_state_dict(require_asset("fixtures/rtmpose-t_256x192_mmpose_random.pth")))
    with torch.no_grad():
        pose = export_onnx(model.eval(), tmp_path / "rtmpose-t.onnx")
    torch_detector = DWposeDetector(yolox_nano_path, pose, backend="torch")
    torch_poses, torch_maps = run(torch_detector, images)
    poses, maps = run(DWposeDetector(yolox_nano_path, pose, backend="onnxruntime"), images)
    assert torch_detector.runtime_info().pose == NetworkRuntime("torch", "cpu", "float32", ())
    assert [len(p) for p in poses] == [12, 4]
    for image, ours, reference in zip(images, torch_poses, poses, strict=True):
        tolerance = 1e-5 * max(image.shape[:2])
        assert len(ours) == len(reference)
        assert np.abs(ours.boxes - reference.boxes).max() <= tolerance
        assert np.abs(ours.keypoints - reference.keypoints).max() <= tolerance
        assert np.abs(ours.scores - reference.scores).max() <= 1e-5
        np.testing.assert_allclose(ours.box_scores, reference.box_scores, atol=1e-5)
    for ours, reference in zip(torch_maps, maps, strict=True):
        np.testing.assert_array_equal(ours, reference)
