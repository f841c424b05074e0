"""Pose sequences: offline smoothing (zero lag, accuracy), gap filling, sequence JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.smoothing import FPS, synthetic
from dwpose_ctrl.openpose import OpenPoseFrame, frame_to_json
from dwpose_ctrl.sequence import (
    FILLED_KEY,
    POINTS_PER_PERSON,
    PoseSequence,
    SequenceFrame,
    Track,
    fill_gaps,
    fill_track_gaps,
    person_from_points,
    person_points,
    read_sequence,
    sequence_from_json,
    sequence_to_json,
    smooth_sequence,
    smooth_track,
    write_sequence,
)
from dwpose_ctrl.video import OneEuroFilter


def track_of(xy: np.ndarray, scores: np.ndarray | None = None) -> Track:
    """A track whose 134 points all follow ``xy`` (T, 2) with ``scores`` (T,) (default 0.9)."""
    frames = len(xy)
    points = np.zeros((frames, POINTS_PER_PERSON, 3))
    points[..., :2] = np.asarray(xy, dtype=np.float64)[:, None, :]
    points[..., 2] = (np.full(frames, 0.9) if scores is None else scores)[:, None]
    return Track(0, points, np.ones(frames, bool), np.zeros((frames, POINTS_PER_PERSON), bool))


def test_a_sine_is_not_shifted_in_time():
    t = np.arange(200)
    truth = 100 + 40 * np.sin(2 * np.pi * 0.7 * t / FPS + 0.3)
    smoothed = smooth_track(track_of(np.stack([truth, truth], axis=1))).points[:, 0, 0]
    inner = slice(10, -10)
    centred, reference = smoothed[inner] - 100, truth[inner] - 100
    gain = centred @ reference / (reference @ reference)
    assert 0.9 < gain <= 1.0
    np.testing.assert_allclose(centred, gain * reference, atol=1e-9)  # same phase: a pure gain
    streamed = OneEuroFilter(1.0, 0.0)
    one_euro = np.array([streamed(np.array([value]), i / FPS)[0] for i, value in enumerate(truth)])
    assert np.abs(one_euro[inner] - 100 - gain * reference).max() > 1.0  # the streaming filter lags


def test_a_step_stays_centred_on_its_frame():
    values = np.where(np.arange(100) < 50, 0.0, 100.0)
    smoothed = smooth_track(track_of(np.stack([values, values], axis=1))).points[:, 0, 0]
    assert smoothed[49] + smoothed[50] == pytest.approx(100.0, abs=1e-9)  # 50 % crossing at 49.5
    np.testing.assert_allclose(smoothed[:45], 0.0, atol=1e-9)
    np.testing.assert_allclose(smoothed[55:], 100.0, atol=1e-9)


@pytest.mark.parametrize("jitter", [2.0, 6.0])
def test_offline_smoother_beats_raw_and_one_euro_on_rms_error(jitter):
    data = synthetic(300, jitter, seed=11)
    visible = ~data.dropped
    frames = len(data.observed)
    track = Track(0, data.observed, np.ones(frames, bool), np.zeros(data.dropped.shape, bool))
    offline = smooth_track(fill_track_gaps(track, 4)).points[..., :2]

    def rms(values):
        return np.sqrt(np.mean(np.sum((values - data.truth)[visible] ** 2, axis=-1)))

    errors = {"none": rms(data.observed[..., :2]), "offline": rms(offline)}
    for cutoff, beta in ((1.0, 0.0), (4.0, 0.03), (8.0, 0.3)):
        smoother = OneEuroFilter(cutoff, beta)
        streamed = np.stack([smoother(f[:, :2], i / FPS) for i, f in enumerate(data.observed)])
        errors[f"one-euro {cutoff} {beta}"] = rms(streamed)
    best_other = min(value for name, value in errors.items() if name != "offline")
    assert errors["offline"] < 0.75 * best_other, errors


def test_gap_filling_restores_short_dropouts_within_the_noise_and_leaves_long_ones_empty():
    jitter = 3.0
    data = synthetic(300, jitter, seed=5)
    frames = len(data.observed)
    track = Track(0, data.observed, np.ones(frames, bool), np.zeros(data.dropped.shape, bool))
    result = smooth_track(fill_track_gaps(track, 4))
    visible = result.visible()
    filled = result.filled
    assert filled.sum() > 1000
    assert not (filled & ~data.dropped).any()
    error = np.linalg.norm(result.points[..., :2] - data.truth, axis=-1)
    assert np.sqrt(np.mean(error[filled] ** 2)) < jitter  # the jitter is jitter * 0.5 / score <= jitter
    for keypoint in range(POINTS_PER_PERSON):  # every dropped run longer than 4 frames stays empty
        dropped = np.flatnonzero(data.dropped[:, keypoint])
        runs = np.split(dropped, np.flatnonzero(np.diff(dropped) > 1) + 1)
        for run in runs:
            if len(run) > 4:
                assert not visible[run, keypoint].any() and not filled[run, keypoint].any()


def test_gap_filling_is_linear_marks_points_and_brings_an_absent_person_back():
    def frame(x, present=True):
        points = np.zeros((POINTS_PER_PERSON, 3))
        points[:, 0], points[:, 1], points[:, 2] = x / 100, 0.5, 0.9
        people = [person_from_points(points)] if present else []
        return SequenceFrame(OpenPoseFrame(people, 100, 100), (7,) if present else ())

    sequence = PoseSequence(
        tuple([frame(10), frame(0, False), frame(0, False), frame(40)] + [frame(0, False)] * 3 + [frame(50)])
    )
    filled = fill_gaps(sequence, max_gap=2)
    assert [len(f.pose.people) for f in filled.frames] == [1, 1, 1, 1, 0, 0, 0, 1]
    for index, x in ((1, 20.0), (2, 30.0)):
        person = filled.frames[index].pose.people[0]
        np.testing.assert_allclose(person_points(person)[:, 0] * 100, x, atol=1e-12)
        assert filled.frames[index].track_ids == (7,) and filled.frames[index].filled[0].all()
    assert not filled.frames[3].filled[0].any()
    assert fill_gaps(sequence, max_gap=0).frames[1].pose.people == []


def test_tracks_span_their_own_frames_and_go_back_unchanged():
    def person(x):
        points = np.zeros((POINTS_PER_PERSON, 3))
        points[:, 0], points[:, 1], points[:, 2] = x, 0.5, 0.9
        return person_from_points(points)

    frames = []
    for index in range(8):
        people, ids = [person(0.1)], [2]
        if 3 <= index <= 5:
            people.append(person(0.2 + index / 100))
            ids.append(7)
        frames.append(SequenceFrame(OpenPoseFrame(people, 100, 50), tuple(ids)))
    sequence = PoseSequence(tuple(frames))
    first, second = sequence.tracks()
    assert (first.track_id, first.start, len(first.present)) == (2, 0, 8)
    assert (second.track_id, second.start, second.stop) == (7, 3, 6) and second.present.all()
    np.testing.assert_allclose(second.points[:, 0, 0], [23.0, 24.0, 25.0])
    again = sequence.with_tracks([first, second])
    for before, after in zip(sequence.frames, again.frames, strict=True):
        assert after.track_ids == before.track_ids
        for a, b in zip(before.pose.people, after.pose.people, strict=True):
            np.testing.assert_allclose(person_points(a), person_points(b), atol=1e-15)


def test_low_confidence_frames_weigh_less():
    xy = np.full((21, 2), 100.0)
    xy[10] = 130.0

    def smoothed_outlier(score: float) -> float:
        scores = np.full(21, 1.0)
        scores[10] = score
        return smooth_track(track_of(xy, scores)).points[10, 0, 0]

    assert 100 < smoothed_outlier(0.31) < smoothed_outlier(1.0) < 130


def test_smooth_sequence_keeps_ids_and_visibility():
    frames = []
    rng = np.random.default_rng(0)
    for index in range(12):
        people, ids = [], []
        for track_id in (4, 9):
            points = np.zeros((POINTS_PER_PERSON, 3))
            points[:, :2] = rng.uniform(0.2, 0.8, size=(POINTS_PER_PERSON, 2))
            points[:, 2] = 0.9
            points[3, 2] = 0.0 if index % 3 == 0 else 0.9
            people.append(person_from_points(points))
            ids.append(track_id)
        frames.append(SequenceFrame(OpenPoseFrame(people[::-1], 64, 48), tuple(ids[::-1])))
    sequence = PoseSequence(tuple(frames))
    smoothed = smooth_sequence(sequence)
    for before, after in zip(sequence.frames, smoothed.frames, strict=True):
        assert after.track_ids == (4, 9)
        for person in after.pose.people:
            np.testing.assert_array_equal(person.body[3, 2], before.pose.people[0].body[3, 2])
    assert not np.allclose(smoothed.frames[5].pose.people[0].body, sequence.frames[5].pose.people[1].body)


# sequence JSON ----------------------------------------------------------------------------------
ANIMALS = [[[10.0, 20.0, 1.0, 30.0, 40.0, 1.0]], [], [[11.0, 21.0, 1.0, 31.0, 41.0, 1.0]]]


def three_frames() -> PoseSequence:
    """3 frames, two tracked people (one with a missing hand and filled points), animals kept."""
    frames = []
    for index in range(3):
        people, filled = [], []
        for person in range(2):
            points = np.zeros((POINTS_PER_PERSON, 3))
            points[:, 0] = (np.arange(POINTS_PER_PERSON) + 8 * index + 100 * person) / 512
            points[:, 1] = (np.arange(POINTS_PER_PERSON)[::-1] + 4 * index) / 256
            points[:, 2] = 1.0
            if person == 1:
                points[113:134] = 0.0  # a missing hand: JSON keeps no coordinates for it
            people.append(person_from_points(points))
            mask = np.zeros(POINTS_PER_PERSON, bool)
            mask[[2, 20, 30, 95]] = person == 0 and index == 1
            filled.append(mask)
        frames.append(SequenceFrame(OpenPoseFrame(people, 512, 256), (0, 5), tuple(filled), ANIMALS[index]))
    return PoseSequence(tuple(frames))


@pytest.mark.parametrize("normalized", [False, True])
def test_sequence_json_round_trip(tmp_path, normalized):
    sequence = three_frames()
    path = tmp_path / "poses.json"
    write_sequence(path, sequence, normalized=normalized)
    data = json.loads(path.read_text())
    assert isinstance(data, list) and len(data) == 3
    assert [entry["animals"] for entry in data] == ANIMALS
    assert all((entry["canvas_width"], entry["canvas_height"]) == (512, 256) for entry in data)
    xs = [v for entry in data for p in entry["people"] for v in p["pose_keypoints_2d"][0::3]]
    assert (max(xs) <= 1.0) == normalized
    assert data[1]["people"][0][FILLED_KEY] == {
        "pose_keypoints_2d": [2],
        "foot_keypoints_2d": [2],
        "face_keypoints_2d": [6],
        "hand_left_keypoints_2d": [3],
    }
    assert [p["person_id"] for p in data[0]["people"]] == [[0], [5]]
    assert data[0]["people"][1]["hand_right_keypoints_2d"] is None

    again = read_sequence(path)
    assert len(again) == 3
    for before, after in zip(sequence.frames, again.frames, strict=True):
        assert after.track_ids == (0, 5) and after.animals == before.animals
        assert (after.pose.width, after.pose.height) == (512, 256)
        for mask_before, mask_after in zip(before.filled, after.filled, strict=True):
            np.testing.assert_array_equal(mask_before, mask_after)
        for person_before, person_after in zip(before.pose.people, after.pose.people, strict=True):
            np.testing.assert_allclose(person_points(person_after), person_points(person_before), atol=1e-12)
    assert sequence_to_json(again, normalized=normalized) == data


def test_normalised_and_pixel_files_read_the_same():
    sequence = three_frames()
    pixels = sequence_from_json(sequence_to_json(sequence))
    normalised = sequence_from_json(sequence_to_json(sequence, normalized=True))
    forced = sequence_from_json(sequence_to_json(sequence, normalized=True), coordinates="normalized")
    for a, b, c in zip(pixels.frames, normalised.frames, forced.frames, strict=True):
        for pa, pb, pc in zip(a.pose.people, b.pose.people, c.pose.people, strict=True):
            np.testing.assert_allclose(person_points(pa), person_points(pb), atol=1e-12)
            np.testing.assert_array_equal(person_points(pb), person_points(pc))


def test_per_frame_files_and_single_frames_are_read(tmp_path):
    sequence = three_frames()
    folder = tmp_path / "clip"
    folder.mkdir()
    for index, entry in enumerate(sequence_to_json(sequence)):
        (folder / f"{index:06d}.json").write_text(json.dumps(entry))
    from_folder = read_sequence(folder)
    assert len(from_folder) == 3 and from_folder.frames[2].track_ids == (0, 5)
    single = sequence_from_json(frame_to_json(sequence.frames[0].pose, 512, 256))
    assert len(single) == 1 and single.frames[0].track_ids == (None, None)


def test_bad_sequence_json_names_the_frame():
    entries = sequence_to_json(three_frames())
    entries[2]["canvas_width"] = "wide"
    with pytest.raises(ValueError, match=r"frame 2: .*canvas_width"):
        sequence_from_json(entries)
    with pytest.raises(TypeError, match="JSON list of frames"):
        sequence_from_json("poses")


def test_invalid_or_deeply_nested_json_files_are_value_errors(tmp_path):
    (tmp_path / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "broken.json").write_text('[{"people": ')
    for name, message in (("nested.json", "nested too deeply"), ("broken.json", "not valid JSON")):
        with pytest.raises(ValueError, match=message):
            read_sequence(tmp_path / name)
