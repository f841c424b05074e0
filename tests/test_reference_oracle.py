"""mode="reference" against the DWPose annotator's own functions (the ``dwposes`` package).

Same ONNX files on both sides: the real YOLOX-Nano (416x416) and a small deterministic pose-like
graph. ``onnxdet.inference_detector`` hard-codes a 640 input, so the oracle below runs its own
``preprocess``, ``demo_postprocess`` and ``multiclass_nms`` at the model's input size, exactly as
``inference_detector`` chains them; everything after detection is the package's code.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from onnx_graphs import pose_like
from PIL import Image

from dwpose_ctrl import DWposeDetector

DWPoses = pytest.importorskip("DWPoses", reason="the dwposes oracle package is not installed")
from DWPoses import onnxdet, onnxpose, wholebody  # noqa: E402

from benchmarks.alternatives.reference_detector import detect_at_model_size  # noqa: E402

VAL5 = ("000000000785", "000000001000", "000000040083", "000000196141", "000000197388")


def oracle_detector(session: ort.InferenceSession, image: np.ndarray) -> np.ndarray:
    """``onnxdet.inference_detector`` with the model's own input size instead of 640."""
    return detect_at_model_size(onnxdet, session, image)


class OracleWholebody(wholebody.Wholebody):
    """The annotator's Wholebody on given sessions, its detector at the model's input size."""

    def __init__(self, det_path, pose_path):
        self.session_det = ort.InferenceSession(str(det_path), providers=["CPUExecutionProvider"])
        self.session_pose = ort.InferenceSession(str(pose_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def pose_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oracle")
    return {
        "fixed": pose_like(folder / "pose_fixed.onnx", dynamic=False, seed=3),
        "dynamic": pose_like(folder / "pose_dynamic.onnx", dynamic=True, seed=3),
    }


@pytest.fixture(scope="module")
def val5_images(val5_dir):
    return {name: np.array(Image.open(val5_dir / f"{name}.jpg").convert("RGB")) for name in VAL5}


@pytest.fixture()
def oracle_detector_patch(monkeypatch):
    monkeypatch.setattr(wholebody, "inference_detector", oracle_detector)


def test_reference_boxes_equal_annotator(yolox_nano_path, pose_paths, val5_images):
    session = ort.InferenceSession(str(yolox_nano_path), providers=["CPUExecutionProvider"])
    ours = DWposeDetector(yolox_nano_path, pose_paths["fixed"], mode="reference")
    total = overlapping_pairs = 0
    for image in val5_images.values():
        expected = oracle_detector(session, image)
        found = ours.detect(image)
        total += len(found)
        assert found.boxes.dtype == np.float64
        np.testing.assert_array_equal(found.boxes, np.asarray(expected, np.float64).reshape(-1, 4))
        overlapping_pairs += sum(
            iou(found.boxes[i], found.boxes[j]) > 0.1
            for i in range(len(found))
            for j in range(i + 1, len(found))
        )
    assert total >= 15 and overlapping_pairs >= 3  # several images with several, overlapping persons


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("variant", ["fixed", "dynamic"])
def test_reference_keypoints_bit_identical(yolox_nano_path, pose_paths, val5_images, variant):
    det_session = ort.InferenceSession(str(yolox_nano_path), providers=["CPUExecutionProvider"])
    pose_session = ort.InferenceSession(str(pose_paths[variant]), providers=["CPUExecutionProvider"])
    ours = DWposeDetector(yolox_nano_path, pose_paths[variant], mode="reference")
    for name, image in val5_images.items():
        boxes = oracle_detector(det_session, image)
        keypoints, scores = onnxpose.inference_pose(pose_session, boxes, image)
        persons = ours.estimate(image)
        assert len(persons) == len(keypoints), name
        np.testing.assert_array_equal(np.stack([p.keypoints for p in persons]), keypoints)
        np.testing.assert_array_equal(np.stack([p.scores for p in persons]), scores)


def test_reference_whole_image_box_when_nobody(yolox_nano_path, pose_paths):
    blank = np.full((240, 320, 3), 30, np.uint8)
    pose_session = ort.InferenceSession(str(pose_paths["fixed"]), providers=["CPUExecutionProvider"])
    keypoints, scores = onnxpose.inference_pose(pose_session, np.array([]), blank)
    (person,) = DWposeDetector(yolox_nano_path, pose_paths["fixed"], mode="reference").estimate(blank)
    assert person.box_score is None
    np.testing.assert_array_equal(person.box, [0, 0, 320, 240])
    np.testing.assert_array_equal(person.keypoints, keypoints[0])
    np.testing.assert_array_equal(person.scores, scores[0])
    assert DWposeDetector(yolox_nano_path, pose_paths["fixed"], mode="default").estimate(blank) == []


def annotator_resize(image: np.ndarray, resolution: int) -> np.ndarray:
    """ControlNet's ``resize_image`` as described in SPEC 1 (short side to ``resolution``, 64-multiples)."""
    height, width = float(image.shape[0]), float(image.shape[1])
    k = float(resolution) / min(height, width)
    new_height = int(np.round(height * k / 64.0)) * 64
    new_width = int(np.round(width * k / 64.0)) * 64
    interpolation = cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA
    return cv2.resize(image, (new_width, new_height), interpolation=interpolation)


def annotator_map(det_path, pose_path, image, detect_resolution=512, image_resolution=512) -> np.ndarray:
    """gradio_dwpose2image's steps: resize, annotate (DWPoses.DWposeDetector on an ndarray), resize back."""
    annotator = DWPoses.DWposeDetector.__new__(DWPoses.DWposeDetector)
    annotator.pose_estimation = OracleWholebody(det_path, pose_path)
    detect_image = annotator_resize(image, detect_resolution)
    height, width = detect_image.shape[:2]
    pose = annotator(detect_image)
    detected_map = DWPoses.draw_pose(pose, height, width)
    out_height, out_width = annotator_resize(image, image_resolution).shape[:2]
    return cv2.resize(detected_map, (out_width, out_height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("resolutions", [(512, 512), (384, 768)])
def test_reference_maps_equal_annotator(
    yolox_nano_path, pose_paths, val5_images, oracle_detector_patch, resolutions
):
    detect_resolution, image_resolution = resolutions
    ours = DWposeDetector(yolox_nano_path, pose_paths["dynamic"], mode="reference")
    drawn_pixels = 0
    for name, image in val5_images.items():
        expected = annotator_map(
            yolox_nano_path, pose_paths["dynamic"], image, detect_resolution, image_resolution
        )
        got = ours(
            image, detect_resolution=detect_resolution, image_resolution=image_resolution, output_type="np"
        )
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
        drawn_pixels += int((got > 0).any(axis=2).sum())
    assert drawn_pixels > 10_000


def test_reference_map_for_an_image_without_persons(yolox_nano_path, pose_paths, oracle_detector_patch):
    """Nobody found: the annotator draws the pose model's answer for the whole image; so do we."""
    image = np.random.default_rng(1).integers(0, 40, (300, 200, 3), dtype=np.uint8)
    reference = DWposeDetector(yolox_nano_path, pose_paths["fixed"], mode="reference")
    (whole_image,) = reference.estimate(image, detect_resolution=512)
    assert whole_image.box_score is None
    expected = annotator_map(yolox_nano_path, pose_paths["fixed"], image)
    got = reference(image, output_type="np")
    np.testing.assert_array_equal(got, expected)
    assert got.any()
