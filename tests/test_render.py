"""Rendering: exact pixels of every drawing rule, and equality with the reference annotator."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import warnings

import cv2
import numpy as np
import pytest

from dwpose_ctrl.openpose import OpenPoseFrame, OpenPosePerson, to_openpose
from dwpose_ctrl.render import (
    BODY_COLORS,
    BODY_LIMBS,
    HAND_EDGE_COLORS,
    HAND_EDGES,
    RenderOptions,
    draw_openpose,
    stick_half_width,
)

BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
BLUE = (0, 0, 255)
ONLY_BODY = RenderOptions(include_hand=False, include_face=False)


def make_person(
    width: int,
    height: int,
    body: dict | None = None,
    feet: dict | None = None,
    face: dict | None = None,
    left_hand: dict | None = None,
    right_hand: dict | None = None,
) -> OpenPosePerson:
    """A person from {index: (x_pixels, y_pixels, score)} per part; unlisted points score 0."""

    def part(points: dict | None, count: int) -> np.ndarray:
        array = np.zeros((count, 3))
        for index, (x, y, score) in (points or {}).items():
            array[index] = (x / width, y / height, score)
        return array

    return OpenPosePerson(
        body=part(body, 18),
        feet=part(feet, 6),
        face=part(face, 68),
        left_hand=part(left_hand, 21),
        right_hand=part(right_hand, 21),
    )


def pixel(image: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(value) for value in image[y, x])


def dimmed(color: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(channel * 0.6) for channel in color)


# ----------------------------------------------------------------------------------------------
# Body


def test_limb_colour_is_dimmed_by_0_6_at_its_middle() -> None:
    # Limb 0 joins the neck (1) and the right shoulder (2): red, times 0.6 -> 153.
    person = make_person(100, 80, body={1: (20, 40, 1.0), 2: (80, 40, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 100, 80), options=ONLY_BODY)
    assert pixel(image, 50, 40) == (153, 0, 0)
    assert pixel(image, 50, 40 + 4) == (153, 0, 0)  # half-width 4
    assert pixel(image, 50, 40 + 5) == BLACK
    assert pixel(image, 20, 40) == BODY_COLORS[1]  # joints are drawn after the dimming
    assert pixel(image, 80, 40) == BODY_COLORS[2]


@pytest.mark.parametrize("limb", range(17))
def test_every_limb_has_its_colour(limb: int) -> None:
    first, second = BODY_LIMBS[limb]
    person = make_person(120, 120, body={first: (10, 60, 1.0), second: (110, 60, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 120, 120), options=ONLY_BODY)
    assert pixel(image, 60, 60) == dimmed(BODY_COLORS[limb])


def test_joint_colours_and_radius() -> None:
    body = {joint: (20 + 30 * (joint % 6), 20 + 30 * (joint // 6), 0.9) for joint in range(18)}
    # Limbs join some of them, but joints are drawn last and are 30 px apart.
    image = draw_openpose(OpenPoseFrame([make_person(200, 100, body=body)], 200, 100), options=ONLY_BODY)
    for joint, (x, y, _) in body.items():
        assert pixel(image, x, y) == BODY_COLORS[joint]
        assert pixel(image, x, y - 4) == BODY_COLORS[joint]
    lone = draw_openpose(OpenPoseFrame([make_person(50, 50, body={0: (25, 25, 1.0)})], 50, 50))
    assert pixel(lone, 25 + 4, 25) == BODY_COLORS[0]
    assert pixel(lone, 25 + 5, 25) == BLACK
    assert np.count_nonzero(lone.any(axis=2)) == np.count_nonzero(
        cv2.circle(np.zeros((50, 50), np.uint8), (25, 25), 4, 1, thickness=-1)
    )


def test_body_joint_at_exactly_0_3_is_not_drawn_but_just_above_is() -> None:
    at = draw_openpose(OpenPoseFrame([make_person(50, 50, body={0: (25, 25, 0.3)})], 50, 50))
    above = draw_openpose(OpenPoseFrame([make_person(50, 50, body={0: (25, 25, 0.30001)})], 50, 50))
    assert not at.any()
    assert pixel(above, 25, 25) == BODY_COLORS[0]


def test_float32_score_0_3_counts_as_visible_like_the_reference() -> None:
    # The reference compares float32 scores in float64: float32(0.3) = 0.30000001 > 0.3.
    keypoints = np.full((1, 133, 2), 25.0)
    scores = np.zeros((1, 133), dtype=np.float32)
    scores[0, 0] = np.float32(0.3)
    image = draw_openpose(to_openpose(keypoints, scores, 50, 50))
    assert pixel(image, 25, 25) == BODY_COLORS[0]


def test_limb_needs_both_ends_visible() -> None:
    person = make_person(100, 80, body={1: (20, 40, 1.0), 2: (80, 40, 0.2)})
    image = draw_openpose(OpenPoseFrame([person], 100, 80))
    assert pixel(image, 50, 40) == BLACK
    assert pixel(image, 20, 40) == BODY_COLORS[1]


def test_body_joints_outside_the_canvas_or_at_zero_are_still_drawn() -> None:
    # No 1-pixel rule for the body: a joint at x = 0 or slightly outside shows its visible part.
    person = make_person(50, 50, body={0: (0, 25, 1.0), 1: (-3, 10, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 50, 50))
    assert pixel(image, 0, 25) == BODY_COLORS[0]
    assert pixel(image, 0, 10) == BODY_COLORS[1]


def test_neck_is_drawn_only_when_both_shoulders_are_above_0_3() -> None:
    keypoints = np.zeros((1, 133, 2))
    keypoints[0, 5] = (60, 40)  # left shoulder
    keypoints[0, 6] = (20, 40)  # right shoulder
    for left, right, drawn in ((0.31, 0.31, True), (0.3, 0.9, False), (0.9, 0.2, False)):
        scores = np.zeros((1, 133))
        scores[0, 5], scores[0, 6] = left, right
        image = draw_openpose(to_openpose(keypoints, scores, 80, 80), options=ONLY_BODY)
        assert (pixel(image, 40, 40) == BODY_COLORS[1]) is drawn
        # The limb neck - right shoulder (limb 0) goes with it.
        assert (pixel(image, 30, 40) == dimmed(BODY_COLORS[0])) is drawn


def test_limb_angle_uses_p1_minus_p2_with_truncation() -> None:
    # atan2 of p1 - p2 is -19.09 deg, truncated to -19; p2 - p1 gives 160.9, truncated to 160,
    # which is a different ellipse (-19 is 161 modulo 180).
    p1, p2 = (70.0, 40.0), (20.0, 57.3)
    person = make_person(100, 100, body={1: (*p1, 1.0), 2: (*p2, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 100, 100), options=ONLY_BODY)
    center = (int((p1[0] + p2[0]) / 2), int((p1[1] + p2[1]) / 2))
    axes = (int(math.hypot(p1[0] - p2[0], p1[1] - p2[1]) / 2), 4)
    angle = math.degrees(math.atan2(p1[1] - p2[1], p1[0] - p2[0]))
    assert int(angle) == -19
    expected = np.zeros((100, 100), np.uint8)
    cv2.fillConvexPoly(expected, cv2.ellipse2Poly(center, axes, int(angle), 0, 360, 1), 1)
    reversed_angle = np.zeros((100, 100), np.uint8)
    cv2.fillConvexPoly(reversed_angle, cv2.ellipse2Poly(center, axes, 160, 0, 360, 1), 1)
    limb_pixels = np.all(image == dimmed(BODY_COLORS[0]), axis=2)
    joint_pixels = np.any(image != 0, axis=2) & ~limb_pixels
    assert np.array_equal(limb_pixels, expected.astype(bool) & ~joint_pixels)
    assert not np.array_equal(limb_pixels, reversed_angle.astype(bool) & ~joint_pixels)


def test_joint_loop_is_outer_so_a_later_joint_index_wins_over_a_later_person() -> None:
    # Person 1 has joint 3 at the spot where person 0 has joint 5: joint 5 is drawn later.
    first = make_person(60, 60, body={5: (30, 30, 1.0)})
    second = make_person(60, 60, body={3: (30, 30, 1.0)})
    image = draw_openpose(OpenPoseFrame([first, second], 60, 60))
    assert pixel(image, 30, 30) == BODY_COLORS[5]
    image = draw_openpose(OpenPoseFrame([second, first], 60, 60))
    assert pixel(image, 30, 30) == BODY_COLORS[5]


def test_limb_loop_is_outer_over_persons() -> None:
    # Person 0's limb 4 (5-6) and person 1's limb 2 (2-3) cross at (50, 50): limb 4 is on top.
    first = make_person(100, 100, body={5: (50, 10, 1.0), 6: (50, 90, 1.0)})
    second = make_person(100, 100, body={2: (10, 50, 1.0), 3: (90, 50, 1.0)})
    for people in ([first, second], [second, first]):
        image = draw_openpose(OpenPoseFrame(people, 100, 100), options=ONLY_BODY)
        assert pixel(image, 50, 50) == dimmed(BODY_COLORS[4])
        assert pixel(image, 30, 50) == dimmed(BODY_COLORS[2])


def test_a_later_persons_hand_is_drawn_over_an_earlier_one() -> None:
    # Each hand is drawn whole (edges, then points): person 1's edge crosses person 0's point.
    point = make_person(60, 60, left_hand={0: (30, 30, 1.0)})
    edge = make_person(60, 60, left_hand={0: (30, 5, 1.0), 1: (30, 55, 1.0)})
    assert pixel(draw_openpose(OpenPoseFrame([point, edge], 60, 60)), 30, 30) == HAND_EDGE_COLORS[0]
    assert pixel(draw_openpose(OpenPoseFrame([edge, point], 60, 60)), 30, 30) == BLUE


# ----------------------------------------------------------------------------------------------
# Hands and faces


def spread_hand(cx: float, cy: float) -> dict:
    """A hand whose five chains radiate from the wrist, each joint 24 px further out."""
    points = {0: (cx, cy, 1.0)}
    for finger in range(5):
        angle = math.radians(-90 + finger * 45)
        for step in range(1, 5):
            radius = 24 * step
            points[1 + finger * 4 + (step - 1)] = (
                cx + radius * math.cos(angle),
                cy + radius * math.sin(angle),
                1.0,
            )
    return points


def test_the_20_hand_edge_colours() -> None:
    hand = spread_hand(120.5, 120.5)
    person = make_person(240, 240, left_hand=hand)
    image = draw_openpose(OpenPoseFrame([person], 240, 240))
    for edge, (first, second) in enumerate(HAND_EDGES):
        x = int((int(hand[first][0]) + int(hand[second][0])) / 2)
        y = int((int(hand[first][1]) + int(hand[second][1])) / 2)
        assert pixel(image, x, y) == HAND_EDGE_COLORS[edge], edge
    for x, y, _ in hand.values():
        assert pixel(image, int(x), int(y)) == BLUE


def test_hand_edge_colours_are_the_rounded_hsv_colours() -> None:
    # SPEC 5: HSV(e / 20, 1, 1) * 255 given to OpenCV as floats, which OpenCV rounds.
    matplotlib_colors = pytest.importorskip("matplotlib.colors")
    for edge, expected in enumerate(HAND_EDGE_COLORS):
        color = matplotlib_colors.hsv_to_rgb([edge / 20.0, 1.0, 1.0]) * 255
        canvas = np.zeros((3, 3, 3), np.uint8)
        cv2.line(canvas, (0, 1), (2, 1), color, thickness=2)
        assert pixel(canvas, 1, 1) == expected


def test_hand_edges_are_two_pixels_thick_and_points_radius_4() -> None:
    person = make_person(100, 100, right_hand={0: (20, 50, 1.0), 1: (80, 50, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 100, 100))
    expected = np.zeros((100, 100, 3), np.uint8)
    cv2.line(expected, (20, 50), (80, 50), HAND_EDGE_COLORS[0], thickness=2)
    cv2.circle(expected, (20, 50), 4, BLUE, thickness=-1)
    cv2.circle(expected, (80, 50), 4, BLUE, thickness=-1)
    assert np.array_equal(image, expected)
    assert pixel(image, 80 + 4, 50) == BLUE
    assert pixel(image, 80 + 5, 50) == BLACK


def test_face_dots_are_white_radius_3() -> None:
    person = make_person(60, 60, face={0: (30, 30, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 60, 60))
    expected = cv2.circle(np.zeros((60, 60, 3), np.uint8), (30, 30), 3, WHITE, thickness=-1)
    assert np.array_equal(image, expected)
    assert pixel(image, 33, 30) == WHITE
    assert pixel(image, 34, 30) == BLACK


def test_hand_and_face_points_at_exactly_0_3_are_drawn() -> None:
    person = make_person(60, 60, face={0: (15, 15, 0.3)}, left_hand={0: (45, 45, 0.3)})
    image = draw_openpose(OpenPoseFrame([person], 60, 60))
    assert pixel(image, 15, 15) == WHITE
    assert pixel(image, 45, 45) == BLUE
    below = make_person(60, 60, face={0: (15, 15, 0.2999)}, left_hand={0: (45, 45, 0.2999)})
    assert not draw_openpose(OpenPoseFrame([below], 60, 60)).any()


@pytest.mark.parametrize(
    ("x", "y", "drawn"),
    [(1.0, 10.0, True), (0.999, 10.0, False), (10.0, 0.5, False), (-0.5, 10.0, False), (10.0, 1.0, True)],
)
def test_one_pixel_rule_for_hands_and_faces(x: float, y: float, drawn: bool) -> None:
    # A point is drawn only when int(x * W) > 0.01 and int(y * H) > 0.01.
    for part in ("face", "left_hand"):
        person = make_person(40, 40, **{part: {0: (x, y, 1.0)}})
        image = draw_openpose(OpenPoseFrame([person], 40, 40))
        assert bool(image.any()) is drawn, part


def test_hand_edge_needs_both_ends_past_the_one_pixel_rule() -> None:
    person = make_person(60, 60, left_hand={0: (0.5, 30, 1.0), 1: (50, 30, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 60, 60))
    assert pixel(image, 25, 30) == BLACK
    assert pixel(image, 50, 30) == BLUE


def test_draw_order_bodies_then_left_hands_then_right_hands_then_faces() -> None:
    spot = {0: (30, 30, 1.0)}
    body_only = make_person(60, 60, body=spot)
    left = make_person(60, 60, left_hand=spot)
    image = draw_openpose(OpenPoseFrame([left, body_only], 60, 60))
    assert pixel(image, 30, 30) == BLUE  # a hand point covers a joint, whatever the person order
    # Every left hand comes before every right hand: person 0's right hand (edge colour 0 line
    # through the spot) covers person 1's left-hand point.
    right = make_person(60, 60, right_hand={1: (10, 30, 1.0), 2: (50, 30, 1.0)})
    image = draw_openpose(OpenPoseFrame([right, left], 60, 60))
    assert pixel(image, 30, 30) == HAND_EDGE_COLORS[1]
    # Faces come last.
    face = make_person(60, 60, face=spot)
    image = draw_openpose(OpenPoseFrame([face, left], 60, 60))
    assert pixel(image, 30, 30) == WHITE


# ----------------------------------------------------------------------------------------------
# Options: parts, feet, stick scaling, overlay


def test_include_flags_leave_parts_out() -> None:
    person = make_person(
        90, 30, body={0: (15, 15, 1.0)}, left_hand={0: (45, 15, 1.0)}, face={0: (75, 15, 1.0)}
    )
    frame = OpenPoseFrame([person], 90, 30)
    full = draw_openpose(frame)
    assert (pixel(full, 15, 15), pixel(full, 45, 15), pixel(full, 75, 15)) == (BODY_COLORS[0], BLUE, WHITE)
    for option, x in (("include_body", 15), ("include_hand", 45), ("include_face", 75)):
        image = draw_openpose(frame, options=RenderOptions(**{option: False}))
        expected = full.copy()
        expected[:, x - 10 : x + 10] = 0
        assert np.array_equal(image, expected), option


def foot_person() -> OpenPosePerson:
    body = {13: (30, 60, 1.0), 10: (90, 60, 1.0)}  # left and right ankle
    feet = {0: (30, 100, 1.0), 1: (10, 100, 1.0), 2: (50, 60, 1.0)}  # left big toe, small toe, heel
    feet |= {3: (90, 100, 1.0), 4: (110, 100, 1.0), 5: (70, 60, 0.3)}  # right heel at 0.3: hidden
    return make_person(120, 120, body=body, feet=feet)


def test_feet_are_off_by_default() -> None:
    image = draw_openpose(OpenPoseFrame([foot_person()], 120, 120))
    assert pixel(image, 30, 80) == BLACK
    assert pixel(image, 30, 100) == BLACK


def test_feet_limbs_and_points_with_body25_colours() -> None:
    options = RenderOptions(include_foot=True)
    image = draw_openpose(OpenPoseFrame([foot_person()], 120, 120), options=options)
    left, right = (0, 0, 255), (0, 255, 255)
    assert pixel(image, 30, 80) == dimmed(left)  # left ankle - big toe
    assert pixel(image, 20, 100) == dimmed(left)  # big toe - small toe
    assert pixel(image, 40, 60) == dimmed(left)  # ankle - heel
    assert pixel(image, 90, 80) == dimmed(right)
    assert pixel(image, 100, 100) == dimmed(right)
    assert pixel(image, 80, 60) == BLACK  # the right heel scores exactly 0.3: not visible
    assert pixel(image, 30, 100) == left
    assert pixel(image, 110, 100) == right
    assert pixel(image, 30, 60) == BODY_COLORS[13]  # the ankle joint covers the foot limbs
    feet_only = draw_openpose(
        OpenPoseFrame([foot_person()], 120, 120), options=RenderOptions(include_body=False, include_foot=True)
    )
    assert pixel(feet_only, 30, 80) == dimmed(left)
    assert pixel(feet_only, 30, 60) == dimmed(left)  # ankle joints belong to the body: not drawn


@pytest.mark.parametrize(
    ("long_side", "half_width"),
    [
        (64, 4),
        (499, 4),
        (500, 8),
        (999, 8),
        (1000, 12),
        (1999, 12),
        (2000, 16),
        (4999, 24),
        (5000, 28),
        (9000, 28),
    ],
)
def test_stick_half_width(long_side: int, half_width: int) -> None:
    assert stick_half_width(long_side, 10, stick_scaling=True) == half_width
    assert stick_half_width(10, long_side, stick_scaling=True) == half_width
    assert stick_half_width(10, long_side, stick_scaling=False) == 4


def test_stick_scaling_thickens_limbs_only() -> None:
    person = make_person(600, 100, body={1: (100, 50, 1.0), 2: (500, 50, 1.0)})
    frame = OpenPoseFrame([person], 600, 100)
    thin = draw_openpose(frame)
    thick = draw_openpose(frame, options=RenderOptions(stick_scaling=True))
    assert pixel(thin, 300, 50 + 5) == BLACK
    assert pixel(thick, 300, 50 + 8) == dimmed(BODY_COLORS[0])
    assert pixel(thick, 300, 50 + 9) == BLACK
    # Joint circles keep radius 4 (the ellipse has no width at its tip).
    assert pixel(thick, 500, 50 - 4) == BODY_COLORS[2]
    assert pixel(thick, 500, 50 - 5) == BLACK


def test_overlay_draws_on_a_copy_and_dims_the_photo_like_the_reference() -> None:
    photo = np.full((60, 80, 3), 100, np.uint8)
    photo[:, :, 2] = 201
    person = make_person(80, 60, body={0: (40, 30, 1.0)}, face={0: (10, 10, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 80, 60), canvas=photo)
    assert np.all(photo[:, :, :2] == 100)  # the input is untouched
    assert pixel(image, 70, 50) == (60, 60, 120)  # 0.6 * 100, 0.6 * 201 truncated
    assert pixel(image, 40, 30) == BODY_COLORS[0]
    assert pixel(image, 10, 10) == WHITE
    no_body = draw_openpose(
        OpenPoseFrame([person], 80, 60), canvas=photo, options=RenderOptions(include_body=False)
    )
    assert pixel(no_body, 70, 50) == (100, 100, 201)


def test_overlay_scales_coordinates_to_the_canvas_size() -> None:
    person = make_person(100, 50, body={0: (50, 25, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 100, 50), canvas=np.zeros((100, 200, 3), np.uint8))
    assert image.shape == (100, 200, 3)
    assert pixel(image, 100, 50) == BODY_COLORS[0]
    resized = draw_openpose(dataclasses.replace(OpenPoseFrame([person], 100, 50), width=200, height=100))
    assert np.array_equal(image, resized)


def test_empty_frame_gives_a_black_map_of_the_frame_size() -> None:
    image = draw_openpose(OpenPoseFrame([], 7, 5))
    assert image.shape == (5, 7, 3)
    assert image.dtype == np.uint8
    assert not image.any()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"canvas": np.zeros((10, 10, 3), np.float32)}, TypeError),
        ({"canvas": np.zeros((10, 10), np.uint8)}, ValueError),
        ({"canvas": np.zeros((10, 10, 4), np.uint8)}, ValueError),
        ({"canvas": [[0, 0, 0]]}, TypeError),
        ({"options": {"include_foot": True}}, TypeError),
    ],
)
def test_bad_render_arguments(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        draw_openpose(OpenPoseFrame([], 10, 10), **kwargs)
    with pytest.raises(TypeError, match="OpenPoseFrame"):
        draw_openpose(np.zeros((10, 10, 3), np.uint8))


def test_refuses_points_too_far_for_opencv_unless_they_are_hidden() -> None:
    far = make_person(100, 100, left_hand={3: (5e9, 10, 1.0)})
    with pytest.raises(ValueError, match="left_hand point"):
        draw_openpose(OpenPoseFrame([far], 100, 100))
    assert not draw_openpose(OpenPoseFrame([far], 100, 100), options=RenderOptions(include_hand=False)).any()
    hidden = make_person(100, 100, body={0: (5e9, 10, 0.2)}, right_hand={0: (1e300, 10, 0.1)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflowing casts of missing points either
        assert not draw_openpose(OpenPoseFrame([hidden], 100, 100)).any()


def test_refuses_absurd_canvas_sizes_before_allocating() -> None:
    with pytest.raises(ValueError, match="MAX_PIXELS"):
        draw_openpose(OpenPoseFrame([], 100_000, 100_000))


# ----------------------------------------------------------------------------------------------
# Equality with the reference annotator (DWPoses, SPEC 12)

requires_reference = pytest.mark.skipif(
    importlib.util.find_spec("DWPoses") is None, reason="the dwposes oracle is not installed"
)


def reference_pose(keypoints: np.ndarray, scores: np.ndarray, height: int, width: int, monkeypatch) -> dict:
    """The reference annotator's ``pose`` dict, built by its own DWposeDetector.__call__ and
    Wholebody.__call__ from given (P, 133) keypoints and scores instead of model outputs."""
    import DWPoses
    import DWPoses.wholebody as wholebody

    monkeypatch.setattr(wholebody, "inference_detector", lambda session, image: np.zeros((0, 4)))
    monkeypatch.setattr(
        wholebody, "inference_pose", lambda session, boxes, image: (keypoints.copy(), scores.copy())
    )
    estimator = wholebody.Wholebody.__new__(wholebody.Wholebody)
    estimator.session_det = estimator.session_pose = None
    detector = DWPoses.DWposeDetector.__new__(DWPoses.DWposeDetector)
    detector.pose_estimation = estimator
    return detector(np.zeros((height, width, 3), np.uint8))


def random_poses(seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Keypoints (float64, some on whole pixels, some off the canvas) and float32 scores with
    many values at exactly 0.3, like the reference's model output types."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(24, 260)), int(rng.integers(24, 260))
    persons = int(rng.integers(0, 12))
    keypoints = rng.uniform(-15, [width + 15, height + 15], size=(persons, 133, 2))
    if seed % 2:
        keypoints = np.round(keypoints)
    scores = rng.uniform(0, 1, size=(persons, 133)).astype(np.float32)
    scores[rng.random((persons, 133)) < 0.15] = np.float32(0.3)
    scores[rng.random((persons, 133)) < 0.15] = 0.0
    return keypoints, scores, height, width


@requires_reference
@pytest.mark.parametrize("seed", range(60))
def test_equals_the_reference_draw_pose(seed: int, monkeypatch) -> None:
    import DWPoses

    keypoints, scores, height, width = random_poses(seed)
    pose = reference_pose(keypoints, scores, height, width, monkeypatch)
    expected = DWPoses.draw_pose(pose, height, width)
    ours = draw_openpose(to_openpose(keypoints, scores, width, height))
    assert np.array_equal(ours, expected)


@requires_reference
@pytest.mark.parametrize("seed", range(60, 70))
def test_equals_the_reference_part_by_part_and_as_overlay(seed: int, monkeypatch) -> None:
    from DWPoses import draw_pose, util

    keypoints, scores, height, width = random_poses(seed)
    pose = reference_pose(keypoints, scores, height, width, monkeypatch)
    frame = to_openpose(keypoints, scores, width, height)
    black = np.zeros((height, width, 3), np.uint8)
    bodies = pose["bodies"]
    parts = {
        "include_body": util.draw_bodypose(black.copy(), bodies["candidate"], bodies["subset"]),
        "include_hand": util.draw_handpose(black.copy(), pose["hands"]),
        "include_face": util.draw_facepose(black.copy(), pose["faces"]),
    }
    for part, expected in parts.items():
        only = {name: name == part for name in parts}
        assert np.array_equal(draw_openpose(frame, options=RenderOptions(**only)), expected), part
    photo = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert np.array_equal(draw_openpose(frame, canvas=photo), draw_pose(pose, canvas=photo.copy()))


@requires_reference
def test_equals_the_reference_for_a_crowd_of_overlapping_people(monkeypatch) -> None:
    import DWPoses

    rng = np.random.default_rng(7)
    centers = rng.uniform(40, 80, size=(20, 1, 2))
    keypoints = centers + rng.normal(0, 25, size=(20, 133, 2))
    scores = rng.uniform(0.2, 1.0, size=(20, 133)).astype(np.float32)
    pose = reference_pose(keypoints, scores, 120, 120, monkeypatch)
    expected = DWPoses.draw_pose(pose, 120, 120)
    assert np.array_equal(draw_openpose(to_openpose(keypoints, scores, 120, 120)), expected)


def test_the_examples_in_docs_rendering_md_run() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "rendering.md"
    if not doc.exists():
        pytest.skip("docs/rendering.md is not in this checkout")
    blocks = doc.read_text().split("```python\n")[1:]
    assert len(blocks) == 4
    for block in blocks:
        exec(compile(block.split("```", 1)[0], str(doc), "exec"), {})
