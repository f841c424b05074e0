"""DWposeDetector end to end on small graphs with known outputs, and on the real YOLOX-Nano."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from onnx_graphs import constant_yolox, peak_pose, pose_like, simcc_peaks, yolox_raw
from PIL import Image

from dwpose_ctrl import DWposeDetector, Person
from dwpose_ctrl.openpose import to_openpose
from dwpose_ctrl.person_detection import yolox_grid
from dwpose_ctrl.placement import Machine, RuntimeUnavailableError
from dwpose_ctrl.render import draw_openpose
from dwpose_ctrl.runtime import OnnxBackend, create_backend
from dwpose_ctrl.weights import ModelFileError

DET_INPUT = (64, 64)
POSE_INPUT = (64, 48)
X_BINS = np.arange(133) % 96
Y_BINS = (np.arange(133) * 7) % 128


def anchor_of(stride, cell_x, cell_y):
    cells, strides = yolox_grid(DET_INPUT)
    return int(
        np.flatnonzero((strides[:, 0] == stride) & (cells[:, 0] == cell_x) & (cells[:, 1] == cell_y))[0]
    )


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    one_person = yolox_raw(
        {anchor_of(16, 1, 1): (0.5, 0.5, float(np.log(2)), float(np.log(2)), 1.0, 0.9)}, DET_INPUT
    )
    simcc_x, simcc_y = simcc_peaks(X_BINS, Y_BINS, POSE_INPUT, peak=1.0, floor=0.0)
    return {
        "one_person": constant_yolox(folder / "one_person.onnx", one_person, DET_INPUT),
        "nobody": constant_yolox(folder / "nobody.onnx", yolox_raw({}, DET_INPUT), DET_INPUT),
        "peaks": peak_pose(folder / "peaks.onnx", simcc_x, simcc_y, POSE_INPUT),
        "pose_dynamic": pose_like(folder / "pose_dynamic.onnx", dynamic=True, seed=5),
        "pose_fixed": pose_like(folder / "pose_fixed.onnx", dynamic=False, seed=5),
    }


def expected_keypoints(center, box_side):
    """Box side s: scale (1.25 s, 1.25 s / 0.75); kp = loc / (48, 64) * scale + centre - scale / 2."""
    scale = np.array([1.25 * box_side, 1.25 * box_side / 0.75])
    locations = np.stack([X_BINS / 2, Y_BINS / 2], axis=1)
    return locations / np.array([48, 64]) * scale + np.asarray(center) - scale / 2


def test_simcc_peaks_land_on_known_image_pixels(graphs):
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"])
    (person,) = detector.estimate(np.zeros((64, 64, 3), np.uint8))
    assert isinstance(person, Person)
    # box: centre (1.5 * 16, 1.5 * 16) = (24, 24), side 2 * 16 = 32
    np.testing.assert_array_equal(person.box, [8, 8, 40, 40])
    assert person.box_score == pytest.approx(0.9)
    np.testing.assert_allclose(person.keypoints, expected_keypoints((24, 24), 32), rtol=0, atol=1e-9)
    # bin 48 -> crop x 24 = the crop centre -> the box centre; bin 64 -> crop y 32 -> centre
    np.testing.assert_allclose(person.keypoints[48], [24, expected_keypoints((24, 24), 32)[48, 1]], atol=1e-9)
    np.testing.assert_array_equal(person.scores, np.ones(133, np.float32))
    assert person.keypoints.shape == (133, 2) and person.keypoints.dtype == np.float64


def test_estimate_reports_input_pixels_for_any_input_size_and_detect_resolution(graphs):
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"])
    (person,) = detector.estimate(np.zeros((128, 128, 3), np.uint8))  # letterbox ratio 0.5
    np.testing.assert_array_equal(person.box, [16, 16, 80, 80])
    np.testing.assert_allclose(person.keypoints, expected_keypoints((48, 48), 64), atol=1e-9)
    (resized,) = detector.estimate(np.zeros((64, 64, 3), np.uint8), detect_resolution=128)
    np.testing.assert_allclose(resized.keypoints, expected_keypoints((24, 24), 32), atol=1e-9)
    np.testing.assert_allclose(resized.box, [8, 8, 40, 40])


def test_modes_when_nobody_is_found(graphs):
    blank = np.zeros((48, 64, 3), np.uint8)
    assert DWposeDetector(graphs["nobody"], graphs["peaks"]).estimate(blank) == []
    (whole,) = DWposeDetector(graphs["nobody"], graphs["peaks"], mode="reference").estimate(blank)
    assert whole.box_score is None
    np.testing.assert_array_equal(whole.box, [0, 0, 64, 48])
    control = DWposeDetector(graphs["nobody"], graphs["peaks"])(blank, 64, 64, output_type="np")
    assert control.shape == (64, 64, 3) and not control.any()


def test_control_map_is_the_rendered_detection_space_frame_resized(graphs):
    import cv2

    detector = DWposeDetector(graphs["one_person"], graphs["peaks"])
    image = np.zeros((64, 96, 3), np.uint8)
    control = detector(image, detect_resolution=64, image_resolution=128)
    assert isinstance(control, Image.Image) and control.size == (192, 128) and control.mode == "RGB"
    det_image = np.zeros((64, 128, 3), np.uint8)  # 96 * 64 / 64 = 1.5 -> 2 blocks of 64
    (person,) = detector.estimate(det_image)
    frame = to_openpose(person.keypoints[None], person.scores[None], 128, 64)
    expected = cv2.resize(draw_openpose(frame), (192, 128), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(np.asarray(control), expected)
    assert np.asarray(control).any()
    nothing = detector(
        image, 64, 128, include_body=False, include_hand=False, include_face=False, output_type="np"
    )
    assert nothing.shape == (128, 192, 3) and not nothing.any()
    same_size = detector(image, detect_resolution=None, image_resolution=None, output_type="np")
    assert same_size.shape == (64, 96, 3)


def test_overlay_draws_on_the_detection_image(graphs):
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"])
    image = np.full((64, 64, 3), 100, np.uint8)
    overlay = detector(image, 64, 64, output_type="np", overlay=True)
    plain = detector(image, 64, 64, output_type="np")
    assert (overlay[plain.any(axis=2) == 0] == 60).all()  # the photo, dimmed by the body pass (x 0.6)
    assert (overlay != plain).any()


def test_lists_return_lists(graphs):
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"])
    images = [np.zeros((64, 64, 3), np.uint8), Image.new("RGB", (128, 128))]
    maps = detector(images, 64, 64, output_type="np")
    assert isinstance(maps, list) and len(maps) == 2 and maps[0].shape == (64, 64, 3)
    persons = detector.estimate(images)
    assert [len(p) for p in persons] == [1, 1]
    np.testing.assert_array_equal(persons[1][0].box, [16, 16, 80, 80])


def test_batched_pose_runs_equal_per_person_runs(graphs, val5_dir, yolox_nano_path, monkeypatch):
    image = np.array(Image.open(val5_dir / "000000001000.jpg").convert("RGB"))
    batched = DWposeDetector(yolox_nano_path, graphs["pose_dynamic"])
    single = DWposeDetector(yolox_nano_path, graphs["pose_fixed"])
    assert batched.pose_backend.dynamic_batch and not single.pose_backend.dynamic_batch
    calls = {"batched": [], "single": []}
    for name, detector in (("batched", batched), ("single", single)):
        run = detector.pose_backend.run
        monkeypatch.setattr(
            detector.pose_backend,
            "run",
            lambda batch, run=run, name=name: calls[name].append(len(batch)) or run(batch),
        )
    many, one_by_one = batched.estimate(image), single.estimate(image)
    assert len(many) >= 5
    assert calls["batched"] == [len(many)] and calls["single"] == [1] * len(many)
    for a, b in zip(many, one_by_one, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.box, b.box)


def test_max_persons_and_min_box_size(graphs, val5_dir, yolox_nano_path):
    image = np.array(Image.open(val5_dir / "000000001000.jpg").convert("RGB"))
    everyone = DWposeDetector(yolox_nano_path, graphs["pose_dynamic"]).estimate(image)
    two = DWposeDetector(yolox_nano_path, graphs["pose_dynamic"], max_persons=2).estimate(image)

    def area(person):
        return (person.box[2] - person.box[0]) * (person.box[3] - person.box[1])

    assert [area(p) for p in two] == sorted((area(p) for p in everyone), reverse=True)[:2]
    smallest_side = sorted(min(p.box[2] - p.box[0], p.box[3] - p.box[1]) for p in everyone)
    large_only = DWposeDetector(yolox_nano_path, graphs["pose_dynamic"], min_box_size=smallest_side[2])
    assert len(large_only.estimate(image)) == len(everyone) - 2
    assert len(large_only.estimate_array(image)) == len(everyone) - 2
    with pytest.raises(ValueError, match="use estimate"):
        large_only.estimate_array(image.astype(np.float32))


def test_sessions_are_created_lazily_once_and_reset_by_to(graphs, monkeypatch):
    cpu_only = Machine(("onnxruntime",), ("CPUExecutionProvider",), torch_version="2.13.0+cpu")
    monkeypatch.setattr("dwpose_ctrl.detector.probe_machine", lambda accelerators: cpu_only)
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"], allow_cpu_fallback=True)
    assert detector._det_backend is None and detector._pose_backend is None
    detector.estimate(np.zeros((64, 64, 3), np.uint8))
    session = detector.det_backend.session
    detector.estimate(np.zeros((32, 32, 3), np.uint8))
    assert detector.det_backend.session is session
    assert detector.to("cpu") is detector and detector.det_backend.session is session
    with pytest.warns(RuntimeWarning, match="device='cuda:0' cannot be used.*allow_cpu_fallback=True"):
        detector.to("cuda:0")
    assert detector._det_backend is None and detector.device == "cuda:0"
    assert len(detector.estimate(np.zeros((64, 64, 3), np.uint8))) == 1
    assert detector.runtime_info().pose.device == "cpu"
    with pytest.raises(RuntimeUnavailableError, match="device='cuda:0' cannot be used"):
        DWposeDetector(graphs["one_person"], graphs["peaks"]).to("cuda:0")
    with pytest.raises(ValueError, match="unknown device"):
        detector.to("tpu")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mode": "fast"}, ValueError, "mode must be one of"),
        ({"backend": "tensorrt"}, ValueError, "backend must be one of"),
        ({"device": "gpu"}, ValueError, "unknown device"),
        ({"score_threshold": 1.5}, ValueError, "score_threshold"),
        ({"nms_threshold": "high"}, TypeError, "nms_threshold"),
        ({"max_persons": 0}, ValueError, "max_persons"),
        ({"min_box_size": -1}, ValueError, "min_box_size"),
    ],
)
def test_bad_options(graphs, kwargs, error, message):
    with pytest.raises(error, match=message):
        DWposeDetector(graphs["one_person"], graphs["peaks"], **kwargs)


def test_bad_call_options(graphs):
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"])
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="output_type"):
        detector(image, output_type="tensor")
    with pytest.raises(ValueError, match="at least 64"):
        detector(image, detect_resolution=16)
    with pytest.raises(TypeError, match="integer"):
        detector.estimate(image, detect_resolution=256.0)


def test_models_given_in_the_wrong_role_are_refused_by_name(graphs):
    swapped = DWposeDetector(graphs["peaks"], graphs["one_person"])
    with pytest.raises(ModelFileError, match=r"peaks\.onnx does not look like a YOLOX"):
        swapped.estimate(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ModelFileError, match=r"one_person\.onnx does not look like an RTMPose"):
        _ = swapped.pose_backend.input_size


def test_torch_backend_goes_through_load_torch_backend(graphs, monkeypatch):
    calls = []

    def load_torch_backend(model_path, role, device, dtype):
        calls.append((str(model_path), role, device, dtype))
        return OnnxBackend(model_path)

    fake = types.ModuleType("dwpose_ctrl.models.backend")
    fake.load_torch_backend = load_torch_backend
    monkeypatch.setitem(sys.modules, "dwpose_ctrl.models.backend", fake)
    detector = DWposeDetector(graphs["one_person"], graphs["peaks"], backend="torch")
    reference = DWposeDetector(graphs["one_person"], graphs["peaks"])
    image = np.zeros((64, 64, 3), np.uint8)
    np.testing.assert_array_equal(
        detector.estimate(image)[0].keypoints, reference.estimate(image)[0].keypoints
    )
    assert calls == [
        (str(graphs["one_person"]), "detector", "cpu", "float32"),
        (str(graphs["peaks"]), "pose", "cpu", "float32"),
    ]
    monkeypatch.setitem(sys.modules, "dwpose_ctrl.models.backend", None)
    with pytest.raises(ImportError, match="backend='torch' needs"):
        _ = DWposeDetector(graphs["one_person"], graphs["peaks"], backend="torch").det_backend


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def count_found(detector: DWposeDetector, val5_dir) -> tuple[int, int]:
    """Annotated persons with area > 1024 matched (one to one, IoU >= 0.5) by a returned box."""
    data = json.loads((val5_dir / "annotations.json").read_text())
    found = total = 0
    for image in data["images"]:
        persons = detector.estimate(val5_dir / image["file_name"])
        boxes = [p.box for p in persons]
        for annotation in data["annotations"]:
            if annotation["image_id"] != image["id"] or annotation["area"] <= 1024:
                continue
            total += 1
            x, y, w, h = annotation["bbox"]
            truth = np.array([x, y, x + w, y + h])
            overlaps = [iou_xyxy(box, truth) for box in boxes]
            if overlaps and max(overlaps) >= 0.5:
                found += 1
                boxes.pop(int(np.argmax(overlaps)))
    return found, total


def test_yolox_nano_finds_the_annotated_persons_of_val5(yolox_nano_path, val5_dir, graphs):
    found, total = count_found(DWposeDetector(yolox_nano_path, graphs["peaks"]), val5_dir)
    assert total == 24
    assert found >= 22
    reference_found, _ = count_found(
        DWposeDetector(yolox_nano_path, graphs["peaks"], mode="reference"), val5_dir
    )
    assert reference_found < found  # RGB into a BGR-trained YOLOX (the reference) finds fewer


def test_create_backend_refuses_unknown_runtimes_and_roles(graphs):
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        create_backend(graphs["peaks"], "tflite", "cpu", "pose")
    with pytest.raises(ValueError, match="role must be"):
        create_backend(graphs["peaks"], "onnxruntime", "cpu", "face")
    backend = create_backend(graphs["peaks"], "onnxruntime", "cpu", "pose")
    assert backend.input_size == POSE_INPUT and backend.dynamic_batch and backend.device == "cpu"
