"""Retargeting: exact geometry of the segments method, the linear fit against lstsq, the rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dwpose_ctrl.openpose import OpenPoseFrame
from dwpose_ctrl.retarget import MIRROR, SEGMENTS, retarget_sequence
from dwpose_ctrl.sequence import (
    FACE_POINTS,
    LEFT_HAND_POINTS,
    RIGHT_HAND_POINTS,
    PoseSequence,
    SequenceFrame,
    person_from_points,
    person_points,
    visible_points,
)

# A standing figure, OpenPose-18 body then the 6 feet points, pixels relative to the neck.
FIGURE = np.array(
    [
        (0, -30), (0, 0), (-25, 0), (-30, 40), (-32, 80), (25, 0), (30, 40), (32, 80),
        (-15, 100), (-16, 160), (-17, 220), (15, 100), (16, 160), (17, 220),
        (-8, -36), (8, -36), (-15, -32), (15, -32),
        (27, 232), (33, 230), (14, 228), (-27, 232), (-33, 230), (-14, 228),
    ],
    dtype=np.float64,
)  # fmt: skip
RNG = np.random.default_rng(7)
HAND_SHAPE = RNG.uniform(-12, 12, size=(21, 2))
FACE_SHAPE = RNG.uniform(-10, 10, size=(68, 2))
NECK, NOSE, RIGHT_WRIST, LEFT_WRIST = 1, 0, 4, 7


def figure_points(
    root=(200.0, 150.0), stretch=(1.0, 1.0), turn=0.0, wave=0.0, hand_size=1.0, face_size=1.0
) -> np.ndarray:
    """(134, 3) pixel points of the figure: ``stretch`` scales x and y, ``turn`` (radians) turns it
    about the vertical axis (x shrinks by cos), ``wave`` rotates the right forearm."""
    body = FIGURE * np.array(stretch)
    body[:, 0] *= math.cos(turn)
    forearm = body[4] - body[3]
    rotation = np.array([[math.cos(wave), -math.sin(wave)], [math.sin(wave), math.cos(wave)]])
    body[4] = body[3] + rotation @ forearm
    body = body + np.array(root)
    points = np.zeros((134, 3))
    points[:24, :2] = body
    points[FACE_POINTS, :2] = body[NOSE] + face_size * FACE_SHAPE
    points[LEFT_HAND_POINTS, :2] = body[LEFT_WRIST] + hand_size * HAND_SHAPE
    points[RIGHT_HAND_POINTS, :2] = body[RIGHT_WRIST] + hand_size * HAND_SHAPE[::-1]
    points[:, 2] = 0.9
    return points


def frame_of(people_points: list[np.ndarray], width: int, height: int) -> OpenPoseFrame:
    scale = np.array([width, height, 1.0])
    return OpenPoseFrame([person_from_points(p / scale) for p in people_points], width, height)


def sequence_of(frames_points: list[list[np.ndarray]], width=640, height=480, ids=None) -> PoseSequence:
    frames = []
    for index, people in enumerate(frames_points):
        track_ids = tuple(range(len(people))) if ids is None else ids[index]
        frames.append(SequenceFrame(frame_of(people, width, height), track_ids))
    return PoseSequence(tuple(frames))


def pixels(sequence: PoseSequence, frame: int, person: int = 0) -> np.ndarray:
    pose = sequence.frames[frame].pose
    return person_points(pose.people[person]) * np.array([pose.width, pose.height, 1.0])


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return abs(math.atan2(a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1]))


REFERENCE = figure_points(root=(150.0, 120.0), stretch=(1.3, 0.8), hand_size=1.5, face_size=0.7)
REF_W, REF_H = 300, 400


def driving_clip() -> list[np.ndarray]:
    """A figure turning (0 to 80 degrees), waving and walking to the right across the frame."""
    return [
        figure_points(root=(120.0 + 40 * t, 140.0 + 3 * t), turn=math.radians(10 * t), wave=0.3 * t)
        for t in range(9)
    ]


def test_segments_give_reference_lengths_and_driving_directions():
    clip = driving_clip()
    result = retarget_sequence(sequence_of([[p] for p in clip]), frame_of([REFERENCE], REF_W, REF_H))
    assert (result.frames[0].pose.width, result.frames[0].pose.height) == (REF_W, REF_H)
    checked = 0
    for t, driving in enumerate(clip):
        out = pixels(result, t)
        for parent, child in SEGMENTS:
            reference_length = np.linalg.norm(REFERENCE[child, :2] - REFERENCE[parent, :2])
            segment = out[child, :2] - out[parent, :2]
            assert abs(np.linalg.norm(segment) / reference_length - 1) <= 1e-9
            assert angle_between(segment, driving[child, :2] - driving[parent, :2]) <= 1e-9
            checked += 1
    assert checked == 9 * 23


def test_first_root_lands_on_the_reference_root_and_motion_is_scaled_by_the_global_scale():
    clip = driving_clip()
    result = retarget_sequence(sequence_of([[p] for p in clip]), frame_of([REFERENCE], REF_W, REF_H))
    np.testing.assert_allclose(pixels(result, 0)[NECK, :2], REFERENCE[NECK, :2], rtol=0, atol=1e-9)
    body = SEGMENTS[:17]
    reference_sum = sum(np.linalg.norm(REFERENCE[c, :2] - REFERENCE[p, :2]) for p, c in body)
    driving_sum = sum(np.linalg.norm(clip[0][c, :2] - clip[0][p, :2]) for p, c in body)
    scale = reference_sum / driving_sum
    for t in range(1, len(clip)):
        moved = pixels(result, t)[NECK, :2] - pixels(result, 0)[NECK, :2]
        np.testing.assert_allclose(moved, scale * (clip[t][NECK, :2] - clip[0][NECK, :2]), atol=1e-9)


def test_hands_and_face_keep_their_shape_scaled_by_the_reference_proportions():
    clip = driving_clip()
    result = retarget_sequence(sequence_of([[p] for p in clip]), frame_of([REFERENCE], REF_W, REF_H))

    def ratio(points, segment):
        return np.linalg.norm(points[segment[1], :2] - points[segment[0], :2])

    right_scale = ratio(REFERENCE, (3, 4)) / ratio(clip[0], (3, 4))
    left_scale = ratio(REFERENCE, (6, 7)) / ratio(clip[0], (6, 7))
    face_scale = ratio(REFERENCE, (1, 0)) / ratio(clip[0], (1, 0))
    for t, driving in enumerate(clip):
        out = pixels(result, t)
        for part, anchor, scale in (
            (RIGHT_HAND_POINTS, RIGHT_WRIST, right_scale),
            (LEFT_HAND_POINTS, LEFT_WRIST, left_scale),
            (FACE_POINTS, NOSE, face_scale),
        ):
            expected = scale * (driving[part, :2] - driving[anchor, :2])
            np.testing.assert_allclose(out[part, :2] - out[anchor, :2], expected, atol=1e-9)


def test_invisible_stays_invisible_and_broken_chains_use_the_placement():
    clip = driving_clip()
    clip[2][NECK, 2] = 0.0  # no neck: nose, shoulders and hips have no visible parent
    clip[3][[6, 7], 2] = 0.1  # left elbow and wrist lost
    clip[4][RIGHT_HAND_POINTS.start + 3 : RIGHT_HAND_POINTS.start + 9, 2] = 0.2
    sequence = sequence_of([[p] for p in clip])
    result = retarget_sequence(sequence, frame_of([REFERENCE], REF_W, REF_H))
    for t, driving in enumerate(clip):
        np.testing.assert_array_equal(visible_points(pixels(result, t)), visible_points(driving))
    # placement p -> R + s (p - D) from frame 0, the scale measured on an untouched frame
    out0 = pixels(result, 0)
    scale = np.linalg.norm(pixels(result, 1)[NECK, :2] - out0[NECK, :2]) / np.linalg.norm(
        clip[1][NECK, :2] - clip[0][NECK, :2]
    )
    for joint in (NOSE, 2, 5, 8, 11):
        expected = REFERENCE[NECK, :2] + scale * (clip[2][joint, :2] - clip[0][NECK, :2])
        np.testing.assert_allclose(pixels(result, 2)[joint, :2], expected, atol=1e-9)
    # a joint below an orphan is again at the reference length from it
    out2 = pixels(result, 2)
    reference_upper_arm = np.linalg.norm(REFERENCE[3, :2] - REFERENCE[2, :2])
    assert np.linalg.norm(out2[3, :2] - out2[2, :2]) == pytest.approx(reference_upper_arm, rel=1e-9)


def test_unknown_reference_lengths_use_the_mirror_then_the_driving_length_at_the_global_scale():
    reference = REFERENCE.copy()
    reference[LEFT_WRIST, 2] = 0.0  # left forearm unknown: mirror (right forearm) length
    reference[[16, 17], 2] = 0.0  # both ears unknown: no mirror either
    clip = driving_clip()
    result = retarget_sequence(sequence_of([[p] for p in clip]), frame_of([reference], REF_W, REF_H))
    assert MIRROR[(6, 7)] == (3, 4)
    right_forearm = np.linalg.norm(reference[4, :2] - reference[3, :2])
    out0, out1 = pixels(result, 0), pixels(result, 1)
    scale = np.linalg.norm(out1[NECK, :2] - out0[NECK, :2]) / np.linalg.norm(
        clip[1][NECK, :2] - clip[0][NECK, :2]
    )
    for t, driving in enumerate(clip):
        out = pixels(result, t)
        assert np.linalg.norm(out[7, :2] - out[6, :2]) == pytest.approx(right_forearm, rel=1e-9)
        for parent, child in ((14, 16), (15, 17)):
            expected = scale * np.linalg.norm(driving[child, :2] - driving[parent, :2])
            assert np.linalg.norm(out[child, :2] - out[parent, :2]) == pytest.approx(expected, rel=1e-9)


def test_linear_method_equals_an_independent_least_squares_fit():
    clip = driving_clip()
    clip[5][[9, 10], 2] = 0.0  # some joints invisible in some frames are left out of the fit
    reference = REFERENCE.copy()
    reference[14, 2] = 0.0
    result = retarget_sequence(
        sequence_of([[p] for p in clip]), frame_of([reference], REF_W, REF_H), method="linear"
    )
    joints = [j for j in (0, 1, 2, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17) if reference[j, 2] > 0.3]
    rows, target_y, target_x, driving_x = [], [], [], []
    for driving in clip:
        for joint in joints:
            if driving[joint, 2] > 0.3:
                rows.append((driving[joint, 1], 1.0))
                target_y.append(reference[joint, 1])
                target_x.append(reference[joint, 0])
                driving_x.append(driving[joint, 0])
    (scale, offset_y), *_ = np.linalg.lstsq(np.array(rows), np.array(target_y), rcond=None)
    offset_x = np.mean(np.array(target_x) - scale * np.array(driving_x))
    for t, driving in enumerate(clip):
        expected = driving[:, :2] * scale + np.array([offset_x, offset_y])
        np.testing.assert_allclose(pixels(result, t)[:, :2], expected, rtol=0, atol=1e-8)
        np.testing.assert_array_equal(visible_points(pixels(result, t)), visible_points(driving))


def test_none_keeps_normalised_coordinates_on_the_reference_canvas():
    clip = driving_clip()[:3]
    sequence = sequence_of([[p] for p in clip])
    result = retarget_sequence(sequence, frame_of([REFERENCE], REF_W, REF_H), method="none")
    for before, after in zip(sequence.frames, result.frames, strict=True):
        assert (after.pose.width, after.pose.height) == (REF_W, REF_H)
        np.testing.assert_allclose(after.pose.people[0].body, before.pose.people[0].body, atol=1e-15)


def test_several_persons_align_to_the_largest_reference_person_and_keep_their_places():
    small = figure_points(root=(60.0, 60.0), stretch=(0.4, 0.4))
    reference = frame_of([small, REFERENCE], REF_W, REF_H)
    frames = [
        [figure_points(root=(150.0 + 5 * t, 150.0)), figure_points(root=(400.0, 150.0), stretch=(0.6, 0.6))]
        for t in range(4)
    ]
    result = retarget_sequence(sequence_of(frames, ids=[(3, 8)] * 4), reference)
    assert result.frames[0].track_ids == (3, 8)
    first, second = pixels(result, 0, 0), pixels(result, 0, 1)
    np.testing.assert_allclose(first[NECK, :2], REFERENCE[NECK, :2], atol=1e-9)  # anchor: the largest
    for out in (first, second):
        for parent, child in SEGMENTS:
            length = np.linalg.norm(out[child, :2] - out[parent, :2])
            assert length == pytest.approx(
                np.linalg.norm(REFERENCE[child, :2] - REFERENCE[parent, :2]), rel=1e-9
            )
    scale = np.linalg.norm(pixels(result, 1, 0)[NECK, :2] - first[NECK, :2]) / 5.0
    np.testing.assert_allclose(second[NECK, :2] - first[NECK, :2], scale * np.array([250.0, 0.0]), atol=1e-9)


def test_bad_arguments_are_refused_with_clear_errors():
    sequence = sequence_of([[figure_points()]])
    with pytest.raises(ValueError, match="unknown retargeting method"):
        retarget_sequence(sequence, frame_of([REFERENCE], REF_W, REF_H), method="affine")
    with pytest.raises(ValueError, match="the reference has no person"):
        retarget_sequence(sequence, OpenPoseFrame([], REF_W, REF_H))
    with pytest.raises(ValueError, match="out of range"):
        retarget_sequence(sequence, frame_of([REFERENCE], REF_W, REF_H), reference_person=2)
