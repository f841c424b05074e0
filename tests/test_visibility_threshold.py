"""The keypoint visibility threshold as a parameter: layout, rendering, JSON and DWposeDetector.

The reference hard-codes 0.3: a body joint (and foot point) is drawn when its score is > 0.3, a
hand or face point is missing only when its score is < 0.3. With a threshold t the same rules
hold with t in place of 0.3; the default stays 0.3.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from onnx_graphs import constant_yolox, peak_pose, simcc_peaks, yolox_anchor_count, yolox_raw

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.openpose import (
    VISIBILITY_THRESHOLD,
    OpenPoseFrame,
    OpenPosePerson,
    frame_from_json,
    frame_to_json,
    persons_to_openpose,
    to_openpose,
)
from dwpose_ctrl.person_detection import yolox_grid
from dwpose_ctrl.render import BODY_COLORS, RenderOptions, draw_openpose

BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
BLUE = (0, 0, 255)
ALL_PARTS = RenderOptions(include_foot=True)
# COCO-WholeBody 0-22 (body and feet) follow the body rule, 23-132 (face, hands) the point rule.
BODY_AND_FEET = slice(0, 23)
FACE_AND_HANDS = slice(23, 133)


def point(x: float, y: float, score: float, width: int = 100, height: int = 80) -> tuple:
    return (x / width, y / height, score)


def edge_person() -> OpenPosePerson:
    """On a 100x80 canvas: nose at exactly 0.5, neck just above 0.5, a left-hand point at exactly
    0.5 and one just below, a face point at exactly 0.5; everything else scores 0."""
    body = np.zeros((18, 3))
    body[0] = point(20, 20, 0.5)
    body[1] = point(60, 20, 0.5000001)
    left_hand = np.zeros((21, 3))
    left_hand[0] = point(20, 60, 0.5)
    left_hand[1] = point(60, 60, 0.4999999)
    face = np.zeros((68, 3))
    face[0] = point(85, 60, 0.5)
    return OpenPosePerson(
        body=body, feet=np.zeros((6, 3)), face=face, left_hand=left_hand, right_hand=np.zeros((21, 3))
    )


def pixel(image: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(value) for value in image[y, x])


def rescored(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Scores that give, under the default 0.3 rules, what ``threshold`` gives on ``scores``:
    1.0 for a drawn point, 0.0 for a hidden one (rules written out here, independently)."""
    scores = np.asarray(scores, dtype=np.float64)
    drawn = np.zeros(scores.shape, dtype=bool)
    drawn[..., BODY_AND_FEET] = scores[..., BODY_AND_FEET] > threshold
    drawn[..., FACE_AND_HANDS] = scores[..., FACE_AND_HANDS] >= threshold
    return drawn.astype(np.float64)


def random_poses(seed: int, thresholds: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Keypoints on the canvas and float32 scores with many values at exactly the thresholds."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(40, 160)), int(rng.integers(40, 160))
    persons = int(rng.integers(1, 5))
    keypoints = rng.uniform(2, [width - 2, height - 2], size=(persons, 133, 2))
    scores = rng.uniform(0, 1, size=(persons, 133)).astype(np.float32)
    for threshold in thresholds:
        scores[rng.random((persons, 133)) < 0.1] = np.float32(threshold)
    return keypoints, scores, height, width


# ----------------------------------------------------------------------------------------------
# Default


def test_the_default_is_the_reference_0_3_everywhere() -> None:
    assert VISIBILITY_THRESHOLD == 0.3
    assert OpenPoseFrame([], 10, 10).visibility_threshold == 0.3
    keypoints, scores, height, width = random_poses(0, (0.3,))
    default = to_openpose(keypoints, scores, width, height)
    explicit = to_openpose(keypoints, scores, width, height, visibility_threshold=0.3)
    assert default.visibility_threshold == 0.3 and default == explicit
    assert np.array_equal(
        draw_openpose(default, options=ALL_PARTS), draw_openpose(explicit, options=ALL_PARTS)
    )
    assert frame_to_json(default, width, height) == frame_to_json(explicit, width, height)


def test_default_detector_threshold_is_0_3(detector_graphs) -> None:
    assert DWposeDetector(*detector_graphs).keypoint_threshold == 0.3


# ----------------------------------------------------------------------------------------------
# Edges at a custom threshold, exact pixels and JSON


def test_at_0_5_a_body_joint_at_exactly_0_5_is_hidden_and_a_hand_or_face_point_drawn() -> None:
    frame = OpenPoseFrame([edge_person()], 100, 80, visibility_threshold=0.5)
    image = draw_openpose(frame)
    assert pixel(image, 20, 20) == BLACK  # nose, score exactly 0.5: not > 0.5
    assert pixel(image, 60, 20) == BODY_COLORS[1]  # neck, just above 0.5
    assert pixel(image, 40, 20) == BLACK  # no nose-neck limb
    assert pixel(image, 20, 60) == BLUE  # hand point at exactly 0.5: not < 0.5
    assert pixel(image, 60, 60) == BLACK  # hand point just below 0.5
    assert pixel(image, 40, 60) == BLACK  # no edge to a hidden point
    assert pixel(image, 85, 60) == WHITE  # face point at exactly 0.5


def test_the_same_points_at_the_default_threshold_are_all_drawn() -> None:
    image = draw_openpose(OpenPoseFrame([edge_person()], 100, 80))
    assert pixel(image, 20, 20) == BODY_COLORS[0]
    assert pixel(image, 60, 20) == BODY_COLORS[1]
    assert pixel(image, 40, 20) != BLACK  # the nose-neck limb
    assert pixel(image, 20, 60) == BLUE
    assert pixel(image, 60, 60) == BLUE
    assert pixel(image, 85, 60) == WHITE


def test_json_at_0_5_writes_exactly_the_drawn_points() -> None:
    person = edge_person()
    data = frame_to_json(OpenPoseFrame([person], 100, 80, visibility_threshold=0.5), 200, 160)
    zeros = [0.0, 0.0, 0.0]
    pose = zeros * 18
    pose[3:6] = [120.0, 40.0, 1.0]
    left = zeros * 21
    left[0:3] = [40.0, 120.0, 1.0]
    face = zeros * 70
    face[0:3] = [170.0, 120.0, 1.0]
    assert data == {
        "people": [
            {
                "pose_keypoints_2d": pose,
                "face_keypoints_2d": face,
                "hand_left_keypoints_2d": left,
                "hand_right_keypoints_2d": None,
            }
        ],
        "canvas_width": 200,
        "canvas_height": 160,
    }
    default = frame_to_json(OpenPoseFrame([person], 100, 80), 200, 160)["people"][0]
    assert default["pose_keypoints_2d"][0:6] == [40.0, 40.0, 1.0, 120.0, 40.0, 1.0]
    assert default["hand_left_keypoints_2d"][0:6] == [40.0, 120.0, 1.0, 120.0, 120.0, 1.0]


def test_feet_follow_the_body_rule_at_a_custom_threshold() -> None:
    feet = np.zeros((6, 3))
    feet[0] = point(30, 70, 0.7)
    feet[3] = point(70, 70, 0.7000001)
    person = dataclasses.replace(edge_person(), feet=feet)
    frame = OpenPoseFrame([person], 100, 80, visibility_threshold=0.7)
    image = draw_openpose(frame, options=ALL_PARTS)
    assert pixel(image, 30, 70) == BLACK and pixel(image, 70, 70) != BLACK
    feet_json = [0.0] * 18
    feet_json[9:12] = [70.0, 70.0, 1.0]
    assert frame_to_json(frame, 100, 80)["people"][0]["foot_keypoints_2d"] == feet_json


def test_neck_needs_both_shoulders_above_the_threshold() -> None:
    keypoints = np.zeros((1, 133, 2))
    keypoints[0, 5] = (10, 20)
    keypoints[0, 6] = (30, 40)
    scores = np.zeros((1, 133))
    scores[0, [5, 6]] = 0.4
    assert to_openpose(keypoints, scores, 100, 100).people[0].body[1, 2] == 1.0
    assert to_openpose(keypoints, scores, 100, 100, visibility_threshold=0.4).people[0].body[1, 2] == 0.0
    scores[0, 6] = 0.41
    assert to_openpose(keypoints, scores, 100, 100, visibility_threshold=0.4).people[0].body[1, 2] == 0.0
    scores[0, 5] = 0.41
    neck = to_openpose(keypoints, scores, 100, 100, visibility_threshold=0.4).people[0].body[1]
    np.testing.assert_array_equal(neck, [0.2, 0.3, 1.0])


# ----------------------------------------------------------------------------------------------
# A threshold changes exactly which points are drawn and written


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("seed", range(3))
def test_a_threshold_draws_and_writes_what_the_default_does_on_rescored_points(seed, threshold) -> None:
    keypoints, scores, height, width = random_poses(seed, (threshold, 0.3))
    frame = to_openpose(keypoints, scores, width, height, visibility_threshold=threshold)
    expected = to_openpose(keypoints, rescored(scores, threshold), width, height)
    assert frame.visibility_threshold == threshold
    assert np.array_equal(draw_openpose(frame, options=ALL_PARTS), draw_openpose(expected, options=ALL_PARTS))
    assert frame_to_json(frame, width, height) == frame_to_json(expected, width, height)
    if threshold != 0.3:
        assert not np.array_equal(
            draw_openpose(frame, options=ALL_PARTS),
            draw_openpose(to_openpose(keypoints, scores, width, height), options=ALL_PARTS),
        )


def test_replace_changes_the_threshold_of_a_frame() -> None:
    keypoints, scores, height, width = random_poses(7, (0.5,))
    scores[:, [5, 6]] = 0.9  # shoulders: the neck (decided by to_openpose) is visible either way
    replaced = dataclasses.replace(to_openpose(keypoints, scores, width, height), visibility_threshold=0.5)
    direct = to_openpose(keypoints, scores, width, height, visibility_threshold=0.5)
    assert replaced == direct
    assert np.array_equal(
        draw_openpose(replaced, options=ALL_PARTS), draw_openpose(direct, options=ALL_PARTS)
    )
    assert frame_to_json(replaced, width, height) == frame_to_json(direct, width, height)


def test_persons_to_openpose_and_json_reading_take_the_threshold() -> None:
    keypoints, scores, height, width = random_poses(3, (0.6,))
    frame = to_openpose(keypoints, scores, width, height, visibility_threshold=0.6)
    empty = persons_to_openpose([], width, height, visibility_threshold=0.6)
    assert empty.visibility_threshold == 0.6 and empty.people == []
    back = frame_from_json(frame_to_json(frame, width, height), visibility_threshold=0.6)
    assert back.visibility_threshold == 0.6
    assert frame_to_json(back, width, height) == frame_to_json(frame, width, height)


# ----------------------------------------------------------------------------------------------
# DWposeDetector end to end on small graphs

DET_INPUT = (64, 64)
POSE_INPUT = (64, 48)
# Scores by keypoint, cycling through values at and around the thresholds tested.
PEAKS = np.array([0.25, 0.3, 0.45, 0.5, 0.55, 0.8, 0.2])[np.arange(133) % 7].astype(np.float32)


@pytest.fixture(scope="module")
def detector_graphs(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("threshold_graphs")
    cells, strides = yolox_grid(DET_INPUT)
    anchor = int(np.flatnonzero((strides[:, 0] == 16) & (cells[:, 0] == 1) & (cells[:, 1] == 1))[0])
    assert anchor < yolox_anchor_count(DET_INPUT)
    raw = yolox_raw({anchor: (0.5, 0.5, float(np.log(2)), float(np.log(2)), 1.0, 0.9)}, DET_INPUT)
    x_bins = (np.arange(133) * 5) % 96
    y_bins = (np.arange(133) * 7) % 128
    simcc_x, simcc_y = simcc_peaks(x_bins, y_bins, POSE_INPUT, peak=1.0, floor=0.0)
    simcc_x[0, np.arange(133), x_bins] = PEAKS
    simcc_y[0, np.arange(133), y_bins] = PEAKS
    return (
        constant_yolox(folder / "one_person.onnx", raw, DET_INPUT),
        peak_pose(folder / "peaks.onnx", simcc_x, simcc_y, POSE_INPUT),
    )


def test_detector_threshold_reaches_the_map_and_the_layout(detector_graphs) -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    default = DWposeDetector(*detector_graphs)
    strict = DWposeDetector(*detector_graphs, keypoint_threshold=0.5)
    (person,) = strict.estimate(image)
    np.testing.assert_array_equal(person.scores, PEAKS)
    keypoints, scores = person.keypoints[None], person.scores[None]

    expected_strict = draw_openpose(to_openpose(keypoints, rescored(scores, 0.5), 64, 64))
    expected_default = draw_openpose(to_openpose(keypoints, rescored(scores, 0.3), 64, 64))
    kwargs = {"detect_resolution": 64, "image_resolution": 64, "output_type": "np"}
    assert np.array_equal(strict(image, **kwargs), expected_strict)
    assert np.array_equal(default(image, **kwargs), expected_default)
    assert not np.array_equal(expected_strict, expected_default)

    frame = strict.to_openpose([person], 64, 64)
    assert frame.visibility_threshold == 0.5
    assert frame_to_json(frame, 64, 64) == frame_to_json(
        to_openpose(keypoints, rescored(scores, 0.5), 64, 64), 64, 64
    )
    assert default.to_openpose([person], 64, 64) == persons_to_openpose([person], 64, 64)


# ----------------------------------------------------------------------------------------------
# Invalid values


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (1.0, ValueError),
        (1.5, ValueError),
        (-0.1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("0.3", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_invalid_thresholds_are_refused_everywhere(detector_graphs, value, error) -> None:
    with pytest.raises(error, match="keypoint_threshold"):
        DWposeDetector(*detector_graphs, keypoint_threshold=value)
    with pytest.raises(error, match=r"visibility_threshold.*\[0, 1\)"):
        to_openpose(np.zeros((0, 133, 2)), np.zeros((0, 133)), 10, 10, visibility_threshold=value)
    with pytest.raises(error, match=r"OpenPoseFrame\.visibility_threshold"):
        OpenPoseFrame([], 10, 10, visibility_threshold=value)
    with pytest.raises(error, match="visibility_threshold"):
        frame_from_json({"people": [], "canvas_width": 10, "canvas_height": 10}, visibility_threshold=value)


def test_numpy_and_integer_thresholds_become_python_floats(detector_graphs) -> None:
    assert DWposeDetector(*detector_graphs, keypoint_threshold=np.float64(0.25)).keypoint_threshold == 0.25
    frame = OpenPoseFrame([], 10, 10, visibility_threshold=0)
    assert type(frame.visibility_threshold) is float and frame.visibility_threshold == 0.0
