"""Pose sequences: whole clips of OpenPose frames with person IDs, processed offline.

* :class:`PoseSequence` holds one :class:`SequenceFrame` per video frame (an
  :class:`~dwpose_ctrl.openpose.OpenPoseFrame`, the track ID of each person, which keypoints were
  filled in, and ComfyUI's ``animals`` entry kept as read). :meth:`PoseSequence.tracks` gives one
  :class:`Track` per person (its 134 points in every frame, in canvas pixels) and
  :meth:`PoseSequence.with_tracks` puts processed tracks back.
* :func:`fill_gaps` interpolates keypoints missing for at most ``max_gap`` frames between two
  frames where they are visible (marked as filled); longer gaps and the ends of a track stay empty.
* :func:`smooth_sequence` is an offline, zero-phase smoother: a confidence-weighted local
  polynomial fit (a weighted Savitzky-Golay filter) centred on every frame, per person and
  keypoint. It uses past and future frames alike, so it adds no lag; the streaming One-Euro filter
  of :mod:`dwpose_ctrl.video` stays for live use.
* :func:`sequence_to_json` / :func:`sequence_from_json` (and :func:`write_sequence` /
  :func:`read_sequence`) exchange a whole clip as one JSON list in the format of ComfyUI's
  ``POSE_KEYPOINT`` (one OpenPose frame per entry), pixel or normalised coordinates; a folder of
  our per-frame files is read too.

The 134 points of a person are, in this order, the OpenPose-18 body, the 6 feet points, the 68
face points, the left hand and the right hand (21 each), as in :class:`OpenPosePerson`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dwpose_ctrl.keypoints import Person
from dwpose_ctrl.openpose import (
    FACE_KEY,
    FOOT_KEY,
    LEFT_HAND_KEY,
    NUM_BODY,
    NUM_FACE,
    NUM_FEET,
    NUM_HAND,
    POSE_KEY,
    RIGHT_HAND_KEY,
    VISIBILITY_THRESHOLD,
    OpenPoseFrame,
    OpenPosePerson,
    check_visibility_threshold,
    frame_from_json,
    frame_to_json,
    joint_visible,
    persons_to_openpose,
    point_present,
)

POINTS_PER_PERSON = NUM_BODY + NUM_FEET + NUM_FACE + 2 * NUM_HAND  # 134
BODY_POINTS = slice(0, NUM_BODY)
FEET_POINTS = slice(NUM_BODY, NUM_BODY + NUM_FEET)
FACE_POINTS = slice(FEET_POINTS.stop, FEET_POINTS.stop + NUM_FACE)
LEFT_HAND_POINTS = slice(FACE_POINTS.stop, FACE_POINTS.stop + NUM_HAND)
RIGHT_HAND_POINTS = slice(LEFT_HAND_POINTS.stop, LEFT_HAND_POINTS.stop + NUM_HAND)
# (OpenPosePerson field, slice of the 134 points, JSON key of the part)
_PARTS = (
    ("body", BODY_POINTS, POSE_KEY),
    ("feet", FEET_POINTS, FOOT_KEY),
    ("face", FACE_POINTS, FACE_KEY),
    ("left_hand", LEFT_HAND_POINTS, LEFT_HAND_KEY),
    ("right_hand", RIGHT_HAND_POINTS, RIGHT_HAND_KEY),
)
FILLED_KEY = "filled_keypoints"
"""Per-person JSON field listing, per part key, the indices of keypoints filled by :func:`fill_gaps`
(written only when some are; other readers ignore it)."""
PERSON_ID_KEY = "person_id"
ANIMALS_KEY = "animals"


def person_points(person: OpenPosePerson) -> np.ndarray:
    """The (134, 3) normalised points of a person (body, feet, face, left hand, right hand)."""
    return np.concatenate([getattr(person, name) for name, _, _ in _PARTS])


def person_from_points(points: np.ndarray) -> OpenPosePerson:
    """An :class:`OpenPosePerson` from (134, 3) normalised points (the inverse of :func:`person_points`)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (POINTS_PER_PERSON, 3):
        raise ValueError(f"a person has ({POINTS_PER_PERSON}, 3) points, got shape {points.shape}")
    return OpenPosePerson(**{name: points[part] for name, part, _ in _PARTS})


def visible_points(points: np.ndarray, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """(..., 134) mask of the points that are drawn: body and feet score > ``threshold``, face and
    hands score >= ``threshold`` (the OpenPose rules of :mod:`dwpose_ctrl.openpose`)."""
    scores = np.asarray(points)[..., 2]
    mask = point_present(scores, threshold)
    mask[..., : FEET_POINTS.stop] = joint_visible(scores[..., : FEET_POINTS.stop], threshold)
    return mask


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class SequenceFrame:
    """One frame of a sequence: the poses, each person's track ID (``None``: not tracked), a (134,)
    mask per person of the keypoints filled by :func:`fill_gaps`, and ComfyUI's ``animals`` entry
    (kept verbatim; ``None`` when the frame had none)."""

    pose: OpenPoseFrame
    track_ids: tuple[int | None, ...] = ()
    filled: tuple[np.ndarray, ...] = ()
    animals: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.pose, OpenPoseFrame):
            raise TypeError(f"SequenceFrame.pose must be an OpenPoseFrame, got {type(self.pose).__name__}")
        count = len(self.pose.people)
        track_ids = tuple(self.track_ids) or (None,) * count
        if len(track_ids) != count:
            raise ValueError(
                f"SequenceFrame has {count} people but {len(track_ids)} track IDs; give one each"
            )
        for track_id in track_ids:
            if track_id is not None and (isinstance(track_id, bool) or not isinstance(track_id, int)):
                raise TypeError(f"track IDs must be ints or None, got {track_id!r}")
        filled = tuple(self.filled) or tuple(np.zeros(POINTS_PER_PERSON, bool) for _ in range(count))
        if len(filled) != count:
            raise ValueError(f"SequenceFrame has {count} people but {len(filled)} filled masks")
        masks = []
        for mask in filled:
            mask = np.array(mask, dtype=bool)
            if mask.shape != (POINTS_PER_PERSON,):
                raise ValueError(f"a filled mask has shape ({POINTS_PER_PERSON},), got {mask.shape}")
            masks.append(_frozen(mask))
        object.__setattr__(self, "track_ids", track_ids)
        object.__setattr__(self, "filled", tuple(masks))


@dataclass(frozen=True, eq=False)
class Track:
    """One person through a sequence, in the pixels of the sequence's canvas.

    The arrays cover T frames from sequence frame ``start`` on (:meth:`PoseSequence.tracks` gives
    the span from the person's first to last frame): ``points`` (T, 134, 3) holds x, y (pixels)
    and the score of every point in every frame (zeros where the person is absent), ``present``
    (T,) the frames the person appears in, ``filled`` (T, 134) the points filled by
    :func:`fill_gaps`. ``track_id`` is ``None`` for untracked persons (then person i of every
    frame is one track).
    """

    track_id: int | None
    points: np.ndarray
    present: np.ndarray
    filled: np.ndarray
    start: int = 0

    def __post_init__(self) -> None:
        points = np.array(self.points, dtype=np.float64)
        if points.ndim != 3 or points.shape[1:] != (POINTS_PER_PERSON, 3):
            raise ValueError(f"Track.points must be (T, {POINTS_PER_PERSON}, 3), got {points.shape}")
        if not np.all(np.isfinite(points)):
            raise ValueError("Track.points contains NaN or infinite values")
        present = np.array(self.present, dtype=bool)
        filled = np.array(self.filled, dtype=bool)
        if present.shape != points.shape[:1] or filled.shape != points.shape[:2]:
            raise ValueError("Track.present must be (T,) and Track.filled (T, 134) for (T, 134, 3) points")
        object.__setattr__(self, "points", _frozen(points))
        object.__setattr__(self, "present", _frozen(present))
        object.__setattr__(self, "filled", _frozen(filled))
        if isinstance(self.start, bool) or not isinstance(self.start, (int, np.integer)) or self.start < 0:
            raise ValueError(f"Track.start must be a frame index >= 0, got {self.start!r}")
        object.__setattr__(self, "start", int(self.start))

    @property
    def stop(self) -> int:
        """The sequence frame after the track's last one."""
        return self.start + len(self.present)

    def visible(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(T, 134) mask of the points drawn in each frame (present, and past the visibility rules)."""
        return self.present[:, None] & visible_points(self.points, threshold)


@dataclass(frozen=True)
class PoseSequence:
    """The poses of a clip, frame by frame (see :class:`SequenceFrame`)."""

    frames: tuple[SequenceFrame, ...]

    def __post_init__(self) -> None:
        frames = tuple(self.frames)
        for index, frame in enumerate(frames):
            if not isinstance(frame, SequenceFrame):
                raise TypeError(f"PoseSequence.frames[{index}] must be a SequenceFrame, got {type(frame)}")
        object.__setattr__(self, "frames", frames)

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def from_frames(
        cls, frames: Iterable[OpenPoseFrame], track_ids: Iterable[Sequence[int | None]] | None = None
    ) -> PoseSequence:
        """A sequence of OpenPose frames, with the track ID of each person per frame (default: none)."""
        frames = list(frames)
        ids = [()] * len(frames) if track_ids is None else [tuple(row) for row in track_ids]
        if len(ids) != len(frames):
            raise ValueError(f"got track IDs for {len(ids)} frames, but {len(frames)} frames")
        return cls(tuple(SequenceFrame(frame, row) for frame, row in zip(frames, ids, strict=True)))

    @classmethod
    def from_persons(
        cls,
        persons_per_frame: Iterable[Sequence[Person]],
        width: int,
        height: int,
        visibility_threshold: float = VISIBILITY_THRESHOLD,
    ) -> PoseSequence:
        """A sequence from detector results per frame (pixels of a ``width`` x ``height`` canvas);
        each person's ``track_id`` (set by video tracking) becomes its track ID."""
        frames = []
        for persons in persons_per_frame:
            persons = list(persons)
            pose = persons_to_openpose(persons, width, height, visibility_threshold)
            frames.append(SequenceFrame(pose, tuple(person.track_id for person in persons)))
        return cls(tuple(frames))

    @property
    def canvas(self) -> tuple[int, int]:
        """(width, height) shared by every frame; a clear error when the frames differ."""
        if not self.frames:
            raise ValueError("the sequence has no frame")
        sizes = {(frame.pose.width, frame.pose.height) for frame in self.frames}
        if len(sizes) != 1:
            raise ValueError(
                f"the frames have different canvas sizes {sorted(sizes)}; resize them to one "
                "(dataclasses.replace(frame, width=..., height=...)) before processing the sequence"
            )
        return sizes.pop()

    @property
    def visibility_threshold(self) -> float:
        return self.frames[0].pose.visibility_threshold if self.frames else VISIBILITY_THRESHOLD

    def tracks(self) -> list[Track]:
        """One :class:`Track` per person, spanning its first to last frame: tracked IDs in
        increasing order, then untracked persons by their position in each frame's list."""
        width, height = self.canvas
        scale = np.array([width, height, 1.0])
        keys: dict[tuple[int, int], int] = {}
        entries: list[tuple[int, int, int]] = []  # (frame, person index, key)
        for frame_index, frame in enumerate(self.frames):
            untracked = 0
            seen: set[int] = set()
            for person_index, track_id in enumerate(frame.track_ids):
                if track_id is None:
                    key = (1, untracked)
                    untracked += 1
                elif track_id in seen:
                    raise ValueError(f"frame {frame_index} has two persons with track ID {track_id}")
                else:
                    key = (0, track_id)
                    seen.add(track_id)
                entries.append((frame_index, person_index, keys.setdefault(key, len(keys))))
        spans: dict[int, list[int]] = {}
        for frame_index, _, slot in entries:
            spans.setdefault(slot, [frame_index, frame_index])[1] = frame_index
        points = {
            slot: np.zeros((last - first + 1, POINTS_PER_PERSON, 3)) for slot, (first, last) in spans.items()
        }
        present = {slot: np.zeros(len(points[slot]), bool) for slot in spans}
        filled = {slot: np.zeros((len(points[slot]), POINTS_PER_PERSON), bool) for slot in spans}
        for frame_index, person_index, slot in entries:
            frame, row = self.frames[frame_index], frame_index - spans[slot][0]
            points[slot][row] = person_points(frame.pose.people[person_index]) * scale
            present[slot][row] = True
            filled[slot][row] = frame.filled[person_index]
        return [
            Track(
                None if key[0] else key[1],
                points[keys[key]],
                present[keys[key]],
                filled[keys[key]],
                spans[keys[key]][0],
            )
            for key in sorted(keys)
        ]

    def with_tracks(
        self, tracks: Sequence[Track], width: int | None = None, height: int | None = None
    ) -> PoseSequence:
        """A copy whose people are ``tracks`` (pixels of a ``width`` x ``height`` canvas, default
        this sequence's), ordered as given; ``animals`` and thresholds are kept."""
        if width is None or height is None:
            width, height = self.canvas
        scale = np.array([width, height, 1.0])
        for track in tracks:
            if track.stop > len(self.frames):
                raise ValueError(
                    f"a track covers frames {track.start} to {track.stop - 1}, "
                    f"the sequence has {len(self.frames)}"
                )
        frames = []
        for frame_index, frame in enumerate(self.frames):
            people, ids, masks = [], [], []
            for track in tracks:
                row = frame_index - track.start
                if 0 <= row < len(track.present) and track.present[row]:
                    people.append(person_from_points(track.points[row] / scale))
                    ids.append(track.track_id)
                    masks.append(track.filled[row])
            pose = OpenPoseFrame(people, width, height, frame.pose.visibility_threshold)
            frames.append(SequenceFrame(pose, tuple(ids), tuple(masks), frame.animals))
        return PoseSequence(tuple(frames))


# gap filling ------------------------------------------------------------------------------------


def fill_track_gaps(track: Track, max_gap: int, threshold: float = VISIBILITY_THRESHOLD) -> Track:
    """Fill every run of at most ``max_gap`` frames where a keypoint is not visible, between two
    frames where it is: x, y linearly interpolated, score the smaller of the two ends' scores (so
    the point is visible by the same rule). Longer gaps and a track's first and last frames are
    never filled. The filled points are marked in ``filled`` and the person becomes present."""
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0:
        raise ValueError(f"max_gap must be an int number of frames >= 0, got {max_gap!r}")
    visible = track.visible(threshold)
    points = track.points.copy()
    filled = track.filled.copy()
    if max_gap > 0 and len(visible):
        count = len(visible)
        frame = np.arange(count)[:, None]
        before = np.maximum.accumulate(np.where(visible, frame, -1), axis=0)  # last visible frame <= t
        after = np.minimum.accumulate(np.where(visible, frame, count)[::-1], axis=0)[::-1]  # first >= t
        gap = ~visible & (before >= 0) & (after < count) & (after - before - 1 <= max_gap)
        first = np.take_along_axis(points, np.clip(before, 0, count - 1)[..., None], axis=0)
        last = np.take_along_axis(points, np.clip(after, 0, count - 1)[..., None], axis=0)
        weight = ((frame - before) / np.maximum(after - before, 1))[..., None]
        between = (1 - weight) * first[..., :2] + weight * last[..., :2]
        points[..., :2] = np.where(gap[..., None], between, points[..., :2])
        points[..., 2] = np.where(gap, np.minimum(first[..., 2], last[..., 2]), points[..., 2])
        filled |= gap
    present = track.present | filled.any(axis=1)
    return Track(track.track_id, points, present, filled, track.start)


def fill_gaps(sequence: PoseSequence, max_gap: int) -> PoseSequence:
    """:func:`fill_track_gaps` for every person of ``sequence`` (the sequence's visibility threshold)."""
    threshold = sequence.visibility_threshold
    return sequence.with_tracks([fill_track_gaps(track, max_gap, threshold) for track in sequence.tracks()])


# offline smoothing ------------------------------------------------------------------------------


def _local_polynomial(
    values: np.ndarray, weights: np.ndarray, radius: int, degree: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted local polynomial fit of ``values`` (T, K, 2) at every frame.

    Each frame t fits a polynomial in the frame offset u (|u| <= radius) to the values at t + u,
    weighted by ``weights[t + u]`` times the tricube kernel of u, and returns its value at u = 0.
    The degree drops to (samples - 1) where fewer than degree + 1 frames carry weight. Returns the
    fitted values and the (T, K) number of frames that carried weight (0: no fit).
    """
    count = values.shape[0]
    order = 2 * degree + 1
    moments = np.zeros((order, *weights.shape))
    targets = np.zeros((degree + 1, *values.shape))
    samples = np.zeros(weights.shape)
    for offset in range(-radius, radius + 1):
        kernel = (1 - (abs(offset) / (radius + 1)) ** 3) ** 3
        u = offset / (radius + 1)
        low, high = max(0, -offset), min(count, count - offset)
        if low >= high:
            continue
        w = kernel * weights[low + offset : high + offset]
        for power in range(order):
            moments[power, low:high] += w * u**power
        for power in range(degree + 1):
            targets[power, low:high] += (w * u**power)[..., None] * values[low + offset : high + offset]
        samples[low:high] += w > 0
    fitted = np.zeros_like(values)
    effective = np.minimum(degree, samples.astype(int) - 1)
    for used in range(degree + 1):
        where = effective == used
        if not where.any():
            continue
        matrix = np.stack(
            [np.stack([moments[i + j][where] for j in range(used + 1)], -1) for i in range(used + 1)], -2
        )
        rhs = np.stack([targets[i][where] for i in range(used + 1)], -2)
        fitted[where] = np.linalg.solve(matrix, rhs)[:, 0]
    return fitted, samples


def smooth_track(
    track: Track, radius: int = 4, degree: int = 2, threshold: float = VISIBILITY_THRESHOLD
) -> Track:
    """Zero-phase smoothing of one person: each visible (or filled) keypoint's x, y in every frame
    becomes the value at that frame of a polynomial of ``degree`` fitted to the frames within
    ``radius`` before and after it, weighted by the tricube kernel and by each frame's confidence
    (the score clipped to [0, 1]; frames where the point is not visible, or was filled, weigh 0).
    The window is symmetric, so a step or a sine is not shifted in time. Scores, visibility and
    absent frames are unchanged; a point with no observed frame in its window keeps its value.
    """
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius must be an int number of frames >= 1, got {radius!r}")
    if isinstance(degree, bool) or not isinstance(degree, int) or not 0 <= degree <= 3:
        raise ValueError(f"degree must be 0, 1, 2 or 3, got {degree!r}")
    visible = track.visible(threshold)
    observed = visible & ~track.filled
    weights = np.where(observed, np.clip(track.points[..., 2], 0.0, 1.0), 0.0)
    fitted, samples = _local_polynomial(track.points[..., :2], weights, radius, degree)
    change = (visible | track.filled) & (samples > 0)
    points = track.points.copy()
    points[..., :2] = np.where(change[..., None], fitted, points[..., :2])
    return dataclasses.replace(track, points=points)


def smooth_sequence(
    sequence: PoseSequence, radius: int = 4, degree: int = 2, max_gap: int = 0
) -> PoseSequence:
    """Fill gaps of at most ``max_gap`` frames (:func:`fill_track_gaps`), then :func:`smooth_track`
    every person of the sequence (filled points take the fitted value where observed frames are in
    reach, else keep their interpolation)."""
    threshold = sequence.visibility_threshold
    tracks = []
    for track in sequence.tracks():
        if max_gap:
            track = fill_track_gaps(track, max_gap, threshold)
        tracks.append(smooth_track(track, radius, degree, threshold))
    return sequence.with_tracks(tracks)


# sequence JSON ----------------------------------------------------------------------------------

Coordinates = Literal["auto", "pixels", "normalized"]


def sequence_to_json(
    sequence: PoseSequence,
    image_width: int | None = None,
    image_height: int | None = None,
    normalized: bool = False,
) -> list[dict]:
    """The sequence as ComfyUI's ``POSE_KEYPOINT`` list: one OpenPose JSON frame per entry
    (:func:`~dwpose_ctrl.openpose.frame_to_json`), with ``person_id: [id]`` for tracked persons,
    :data:`FILLED_KEY` where points were filled and ``animals`` where the frame had it.

    Coordinates are pixels of an ``image_width`` x ``image_height`` image (default: each frame's
    canvas), or with ``normalized=True`` values in [0, 1] of that canvas.
    """
    entries = []
    for frame in sequence.frames:
        width = frame.pose.width if image_width is None else image_width
        height = frame.pose.height if image_height is None else image_height
        entry = frame_to_json(frame.pose, 1, 1) if normalized else frame_to_json(frame.pose, width, height)
        entry["canvas_width"], entry["canvas_height"] = int(width), int(height)
        for person, track_id, filled in zip(entry["people"], frame.track_ids, frame.filled, strict=True):
            if track_id is not None:
                person[PERSON_ID_KEY] = [int(track_id)]
            if filled.any():
                person[FILLED_KEY] = {
                    key: np.flatnonzero(filled[part]).tolist()
                    for _, part, key in _PARTS
                    if filled[part].any()
                }
        if frame.animals is not None:
            entry[ANIMALS_KEY] = frame.animals
        entries.append(entry)
    return entries


def _numbers(entry: dict) -> Iterable[tuple[float, float, float]]:
    """(x, y, c) triples of every person part in one JSON frame (finite numbers only)."""
    for person in entry.get("people") or []:
        if not isinstance(person, dict):
            continue
        for _, _, key in _PARTS:
            values = person.get(key)
            if isinstance(values, list) and len(values) % 3 == 0:
                for index in range(0, len(values), 3):
                    triple = values[index : index + 3]
                    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in triple):
                        yield triple[0], triple[1], triple[2]


def _is_normalized(entries: list[dict]) -> bool:
    """True when every point with c > 0 lies in [0, 1] x [0, 1] (and there is at least one)."""
    seen = False
    for entry in entries:
        for x, y, c in _numbers(entry):
            if c > 0:
                seen = True
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    return False
    return seen


def _read_person_id(person: dict, where: str) -> int | None:
    value = person.get(PERSON_ID_KEY)
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}.{PERSON_ID_KEY} must be an int or [int], got {value!r}")
    return None if value < 0 else value


def _read_filled(person: dict, where: str) -> np.ndarray:
    mask = np.zeros(POINTS_PER_PERSON, bool)
    value = person.get(FILLED_KEY)
    if value is None:
        return mask
    if not isinstance(value, dict):
        raise ValueError(f"{where}.{FILLED_KEY} must map part keys to index lists, got {value!r}")
    parts = {key: part for _, part, key in _PARTS}
    for key, indices in value.items():
        part = parts.get(key)
        size = 0 if part is None else part.stop - part.start
        if (
            part is None
            or not isinstance(indices, list)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < size for i in indices)
        ):
            raise ValueError(
                f"{where}.{FILLED_KEY}[{key!r}] must list point indices of that part, got {indices!r}"
            )
        mask[part.start + np.asarray(indices, dtype=int)] = True
    return mask


def sequence_from_json(
    data: Any, visibility_threshold: float = VISIBILITY_THRESHOLD, coordinates: Coordinates = "auto"
) -> PoseSequence:
    """Read a sequence: a list of OpenPose JSON frames (ComfyUI's ``POSE_KEYPOINT``), or one frame.

    ``coordinates``: ``"pixels"`` (divided by ``canvas_width`` / ``canvas_height``),
    ``"normalized"`` (already in [0, 1]) or ``"auto"``: normalised when every point with c > 0 in
    the whole sequence lies in [0, 1] (real pixel poses never do on a canvas of 2 pixels or more).
    ``person_id``, :data:`FILLED_KEY` and ``animals`` are read back.
    """
    if coordinates not in ("auto", "pixels", "normalized"):
        raise ValueError(f"coordinates must be 'auto', 'pixels' or 'normalized', got {coordinates!r}")
    visibility_threshold = check_visibility_threshold(visibility_threshold)
    entries = [data] if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise TypeError(
            f"a pose sequence is a JSON list of frames (or one frame object), got {type(data).__name__}"
        )
    normalized = coordinates == "normalized" or (coordinates == "auto" and _is_normalized(entries))
    frames = []
    for index, entry in enumerate(entries):
        where = f"frame {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an OpenPose JSON object, got {type(entry).__name__}")
        try:
            if normalized:
                pose = frame_from_json({**entry, "canvas_width": 1, "canvas_height": 1}, visibility_threshold)
                check = frame_from_json({**entry, "people": []}, visibility_threshold)
                pose = dataclasses.replace(pose, width=check.width, height=check.height)
            else:
                pose = frame_from_json(entry, visibility_threshold)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        people = entry["people"]
        track_ids = tuple(_read_person_id(p, f"{where} people[{i}]") for i, p in enumerate(people))
        filled = tuple(_read_filled(p, f"{where} people[{i}]") for i, p in enumerate(people))
        frames.append(SequenceFrame(pose, track_ids, filled, entry.get(ANIMALS_KEY)))
    return PoseSequence(tuple(frames))


def write_sequence(
    path: str | os.PathLike,
    sequence: PoseSequence,
    image_width: int | None = None,
    image_height: int | None = None,
    normalized: bool = False,
    indent: int | None = None,
) -> None:
    """Write :func:`sequence_to_json` to ``path`` (UTF-8, floats in full precision)."""
    text = json.dumps(
        sequence_to_json(sequence, image_width, image_height, normalized), indent=indent, allow_nan=False
    )
    Path(path).write_text(text, encoding="utf-8")


def read_sequence(
    path: str | os.PathLike,
    visibility_threshold: float = VISIBILITY_THRESHOLD,
    coordinates: Coordinates = "auto",
) -> PoseSequence:
    """Read a sequence JSON file (a list of frames, or one frame), or a folder of per-frame OpenPose
    JSON files such as ``dwpose-render --json`` writes for a video (``000000.json``, ... in name order)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ValueError(f"{path} holds no .json file; give a sequence file or a folder of frame files")
        data: Any = [parse_json(file.read_text(encoding="utf-8"), file) for file in files]
    else:
        data = parse_json(path.read_text(encoding="utf-8"), path)
    return sequence_from_json(data, visibility_threshold, coordinates)


def parse_json(text: str | bytes, source: object) -> Any:
    """``json.loads``, with invalid or too deeply nested text as a ``ValueError`` naming ``source``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{source}: not pose JSON: the text is nested too deeply to parse") from error
