"""Retargeting a driving pose sequence onto a reference character (pose alignment for animation).

Video models driven by DWPose maps (Animate Anyone, MusePose, MimicMotion, ...) animate a
reference image with the poses of a driving video; a driving dancer with other proportions than
the character stretches it. :func:`retarget_sequence` returns the driving sequence redrawn with the
reference's proportions, placed on the reference image. All geometry is done in pixels (so it is
right for any aspect ratio); the result is normalised by the reference's canvas. Methods:

``"segments"`` (MusePose-style, per segment)
    The body is a tree rooted at the neck (OpenPose 1): the 17 limbs the map draws plus the 6 foot
    segments. In every frame each visible segment keeps the direction it has in the driving frame
    and gets the reference's length, laid out from the root outwards. The root itself follows the
    *placement* p -> R + s (p - D): the first driving frame's root D lands on the reference's root
    R, and the driving motion is applied relative to it, scaled by the global scale s (the
    reference's summed body-segment length over the driving first frame's, on the segments visible
    in both; 1 when there are none). Rules for what the tree cannot do:

    * a segment whose reference length is unknown (an end not visible in the reference) takes the
      length of its mirror segment (left/right) in the reference when that is known, else its
      driving length in that frame times s;
    * a visible keypoint whose parent is not visible in that frame (so no segment reaches it), and
      every keypoint that is not visible, is placed by the placement (the driving pose at scale s);
    * a segment of length 0 in the driving frame puts the child on its parent;
    * foreshortening is not kept: a limb pointing at the camera gets its full reference length
      (MusePose fixes each part's ratio on the first frame instead).

    Hands follow their wrist (right hand: OpenPose 4, left hand: 7) and the face follows the nose
    (0): the driving points relative to the anchor, scaled by that part's scale, are added to the
    anchor's new position. The hand scale is the reference's forearm length over the driving
    forearm length (its first frame where the forearm is visible), the face scale likewise with the
    neck-nose segment; either falls back to s. Without a visible anchor the part uses the placement.
    The root is the neck, or when the neck is not visible the mean of the visible body joints.

``"linear"`` (MimicMotion-style, one global fit)
    One scale a and offset b for the whole clip, x' = a x + b_x, y' = a y + b_y, in pixels: a and
    b_y are the least-squares fit of the driving y onto the reference's y over every frame and
    every joint of (nose, neck, shoulders, hips, knees, ankles, eyes, ears) visible in both, and b_x
    is the mean of the reference's x minus a times the driving x over the same pairs (MimicMotion's
    ``get_video_pose``, with the arms left out as there). It fits the anchor person and moves
    every person with it.

``"none"``
    The driving poses unchanged (normalised coordinates), only drawn on the reference's canvas.

In every method a keypoint keeps its score, so what is not visible stays not visible. With several
persons, each tracked person is aligned to the same reference person (default: the largest one
in the reference), and the placement (or the linear fit) comes from the anchor person (default:
the largest person of the first driving frame that has one), so the persons keep their places
relative to each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dwpose_ctrl.openpose import OpenPoseFrame
from dwpose_ctrl.render import BODY_LIMBS, FOOT_LIMBS
from dwpose_ctrl.sequence import (
    BODY_POINTS,
    FACE_POINTS,
    FEET_POINTS,
    LEFT_HAND_POINTS,
    RIGHT_HAND_POINTS,
    PoseSequence,
    Track,
    person_points,
    visible_points,
)

RetargetMethod = Literal["segments", "linear", "none"]
METHODS: tuple[str, ...] = ("segments", "linear", "none")

ROOT = 1  # the neck
NOSE = 0
# Parent -> child pairs of the 24 body + feet points; BODY_LIMBS is already a tree rooted at the
# neck listed parents first, and each foot segment starts at an ankle (or a big toe).
BODY_SEGMENTS: tuple[tuple[int, int], ...] = tuple(BODY_LIMBS)
FOOT_SEGMENTS: tuple[tuple[int, int], ...] = tuple(FOOT_LIMBS)  # feet are points 18-23 in both
SEGMENTS = BODY_SEGMENTS + FOOT_SEGMENTS
# Left/right mirror of every segment that has one (OpenPose right: 2-4, 8-10, 14, 16;
# left: 5-7, 11-13, 15, 17).
_MIRROR_PAIRS = (
    ((1, 2), (1, 5)), ((2, 3), (5, 6)), ((3, 4), (6, 7)), ((1, 8), (1, 11)), ((8, 9), (11, 12)),
    ((9, 10), (12, 13)), ((0, 14), (0, 15)), ((14, 16), (15, 17)),
    ((13, 18), (10, 21)), ((18, 19), (21, 22)), ((13, 20), (10, 23)),
)  # fmt: skip
MIRROR: dict[tuple[int, int], tuple[int, int]] = {
    **{a: b for a, b in _MIRROR_PAIRS},
    **{b: a for a, b in _MIRROR_PAIRS},
}
RIGHT_WRIST, LEFT_WRIST = 4, 7
RIGHT_FOREARM, LEFT_FOREARM, NECK_NOSE = (3, 4), (6, 7), (1, 0)
LINEAR_FIT_JOINTS = (0, 1, 2, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)


@dataclass(frozen=True)
class Placement:
    """The global map p -> ``reference_root`` + ``scale`` (p - ``driving_root``), in pixels."""

    scale: float
    driving_root: tuple[float, float]
    reference_root: tuple[float, float]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) driving pixels to reference pixels."""
        return np.asarray(self.reference_root) + self.scale * (points - np.asarray(self.driving_root))


@dataclass(frozen=True)
class LinearFit:
    """x' = ``scale`` x + ``offset[0]``, y' = ``scale`` y + ``offset[1]`` (pixels)."""

    scale: float
    offset: tuple[float, float]

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points + np.asarray(self.offset)


def _root(points: np.ndarray, visible: np.ndarray) -> np.ndarray | None:
    """The root of one pose (134 points): the neck, else the mean of the visible body joints."""
    if visible[ROOT]:
        return points[ROOT, :2]
    body = visible[BODY_POINTS]
    if body.any():
        return points[BODY_POINTS][body, :2].mean(axis=0)
    return None


def _extent_area(points: np.ndarray, visible: np.ndarray) -> float:
    """Area of the box around the visible body and feet joints (0 with fewer than two)."""
    mask = visible[: FEET_POINTS.stop]
    if mask.sum() < 2:
        return 0.0
    selected = points[: FEET_POINTS.stop][mask, :2]
    size = selected.max(axis=0) - selected.min(axis=0)
    return float(size[0] * size[1])


def largest_person(frame: OpenPoseFrame) -> int:
    """Index of the person of ``frame`` whose visible body and feet joints span the largest box."""
    if not frame.people:
        raise ValueError("the reference has no person; give an image or JSON with the character's pose")
    scale = np.array([frame.width, frame.height, 1.0])
    areas = []
    for person in frame.people:
        points = person_points(person) * scale
        areas.append(_extent_area(points, visible_points(points, frame.visibility_threshold)))
    return int(np.argmax(areas))


def _lengths(points: np.ndarray, visible: np.ndarray, segments: Sequence[tuple[int, int]]) -> np.ndarray:
    """Length of each segment of ``points`` (..., 134, 3); NaN where an end is not visible."""
    lengths = []
    for parent, child in segments:
        length = np.linalg.norm(points[..., child, :2] - points[..., parent, :2], axis=-1)
        lengths.append(np.where(visible[..., parent] & visible[..., child], length, np.nan))
    return np.stack(lengths, axis=-1)


def reference_lengths(points: np.ndarray, visible: np.ndarray) -> dict[tuple[int, int], float]:
    """The reference's length of every segment (pixels), with the mirror rule for unknown ones;
    segments with neither end pair visible are left out."""
    measured = dict(zip(SEGMENTS, _lengths(points, visible, SEGMENTS).tolist(), strict=True))
    lengths = {}
    for segment, length in measured.items():
        if np.isnan(length):
            length = measured.get(MIRROR.get(segment, segment), np.nan)
        if not np.isnan(length):
            lengths[segment] = float(length)
    return lengths


def _first_length(track_points: np.ndarray, visible: np.ndarray, segment: tuple[int, int]) -> float | None:
    lengths = _lengths(track_points, visible, [segment])[:, 0]
    known = np.flatnonzero(~np.isnan(lengths))
    return None if len(known) == 0 else float(lengths[known[0]])


def _anchor_frame(track: Track, threshold: float) -> tuple[int, np.ndarray] | None:
    """The first frame of ``track`` with a root, and that root."""
    visible = track.visible(threshold)
    for frame in np.flatnonzero(track.present):
        root = _root(track.points[frame], visible[frame])
        if root is not None:
            return int(frame), root
    return None


def placement(
    anchor: Track, reference: np.ndarray, reference_visible: np.ndarray, threshold: float
) -> Placement:
    """The segments method's placement for ``anchor``: its first root onto the reference's root,
    scaled by the ratio of summed body-segment lengths (see the module docstring)."""
    reference_root = _root(reference, reference_visible)
    if reference_root is None:
        raise ValueError("the reference person has no visible body joint to place the figure on")
    found = _anchor_frame(anchor, threshold)
    if found is None:
        raise ValueError("the driving person has no visible body joint in any frame")
    frame, driving_root = found
    driving = _lengths(anchor.points[frame], anchor.visible(threshold)[frame], BODY_SEGMENTS)
    target = _lengths(reference, reference_visible, BODY_SEGMENTS)
    both = ~np.isnan(driving) & ~np.isnan(target) & (driving > 0)
    scale = float(target[both].sum() / driving[both].sum()) if both.any() else 1.0
    return Placement(scale, tuple(driving_root.tolist()), tuple(reference_root.tolist()))


def _segments_track(
    track: Track, reference: np.ndarray, reference_visible: np.ndarray, place: Placement, threshold: float
) -> np.ndarray:
    """(T, 134, 3) points of ``track`` retargeted by segments (pixels of the reference)."""
    visible = track.visible(threshold)
    source = track.points
    result = source.copy()
    result[..., :2] = place.apply(source[..., :2])
    known = reference_lengths(reference, reference_visible)
    for parent, child in SEGMENTS:
        linked = visible[:, parent] & visible[:, child]
        if not linked.any():
            continue
        delta = source[linked, child, :2] - source[linked, parent, :2]
        length = np.linalg.norm(delta, axis=-1, keepdims=True)
        target = known.get((parent, child))
        target_length = place.scale * length if target is None else np.full_like(length, target)
        direction = np.divide(delta, length, out=np.zeros_like(delta), where=length > 0)
        result[linked, child, :2] = result[linked, parent, :2] + target_length * direction
    for part, anchor, segment in (
        (RIGHT_HAND_POINTS, RIGHT_WRIST, RIGHT_FOREARM),
        (LEFT_HAND_POINTS, LEFT_WRIST, LEFT_FOREARM),
        (FACE_POINTS, NOSE, NECK_NOSE),
    ):
        scale = part_scale(track, known, segment, place.scale, threshold)
        anchored = visible[:, anchor]
        offsets = source[anchored, part, :2] - source[anchored, anchor, None, :2]
        result[anchored, part, :2] = result[anchored, anchor, None, :2] + scale * offsets
    return result


def part_scale(
    track: Track,
    known: dict[tuple[int, int], float],
    segment: tuple[int, int],
    fallback: float,
    threshold: float,
) -> float:
    """Scale of a hand (``segment`` its forearm) or the face (neck-nose): the reference's length
    over the track's first visible length of ``segment``; ``fallback`` when either is unknown."""
    target = known.get(segment)
    driving = _first_length(track.points, track.visible(threshold), segment)
    if target is None or not driving:
        return fallback
    return target / driving


def linear_fit(
    anchor: Track, reference: np.ndarray, reference_visible: np.ndarray, threshold: float
) -> LinearFit:
    """The linear method's fit (see the module docstring) of ``anchor`` onto the reference."""
    joints = [joint for joint in LINEAR_FIT_JOINTS if reference_visible[joint]]
    visible = anchor.visible(threshold)[:, joints]
    driving = anchor.points[:, joints, :2][visible]
    target = np.broadcast_to(reference[joints, :2], (len(anchor.points), len(joints), 2))[visible]
    if len(driving) < 2 or np.ptp(driving[:, 1]) == 0:
        raise ValueError(
            "the linear fit needs at least two driving joints at different heights that are also visible "
            "in the reference (nose, neck, shoulders, hips, knees, ankles, eyes, ears); "
            "use the segments method"
        )
    scale, offset_y = np.polyfit(driving[:, 1], target[:, 1], 1)
    offset_x = float(np.mean(target[:, 0] - scale * driving[:, 0]))
    return LinearFit(float(scale), (offset_x, float(offset_y)))


def _anchor_index(tracks: list[Track], threshold: float) -> int:
    """The largest person of the first frame that has one."""
    present = [track for track in tracks if track.present.any()]
    if not present:
        return 0
    first = min(track.start + int(np.argmax(track.present)) for track in present)
    here = [
        index
        for index, track in enumerate(tracks)
        if track.start <= first < track.stop and track.present[first - track.start]
    ]
    areas = []
    for index in here:
        row = first - tracks[index].start
        areas.append(_extent_area(tracks[index].points[row], tracks[index].visible(threshold)[row]))
    return here[int(np.argmax(areas))]


def retarget_sequence(
    driving: PoseSequence,
    reference: OpenPoseFrame,
    method: RetargetMethod = "segments",
    reference_person: int | None = None,
    anchor_track: int | None = None,
) -> PoseSequence:
    """``driving`` redrawn with the proportions of a person of ``reference``, on its canvas.

    ``reference`` is one frame (from ``DWposeDetector.to_openpose`` of the reference image, or
    read from OpenPose JSON); ``reference_person`` picks its person (default:
    :func:`largest_person`). ``anchor_track`` is the track ID whose first frame places the figure
    (default: the largest person of the first driving frame with one). The result has the
    reference's canvas size and the driving sequence's frames, IDs, filled marks and ``animals``.
    See the module docstring for the ``method``\\ s and their rules.
    """
    if method not in METHODS:
        raise ValueError(f"unknown retargeting method {method!r}; expected one of {METHODS}")
    if not isinstance(reference, OpenPoseFrame):
        raise TypeError(f"reference must be an OpenPoseFrame, got {type(reference).__name__}")
    if not isinstance(driving, PoseSequence):
        raise TypeError(f"driving must be a PoseSequence, got {type(driving).__name__}")
    width, height = reference.width, reference.height
    if not driving.frames:
        return driving
    if method == "none":
        tracks = [_rescale(track, driving.canvas, (width, height)) for track in driving.tracks()]
        return driving.with_tracks(tracks, width, height)
    if reference_person is None:
        reference_person = largest_person(reference)
    if not 0 <= reference_person < len(reference.people):
        raise ValueError(
            f"reference_person {reference_person} is out of range: "
            f"the reference has {len(reference.people)} persons"
        )
    threshold = driving.visibility_threshold
    target = person_points(reference.people[reference_person]) * np.array([width, height, 1.0])
    target_visible = visible_points(target, reference.visibility_threshold)
    tracks = driving.tracks()
    if not tracks:
        return driving.with_tracks([], width, height)
    if anchor_track is None:
        anchor = tracks[_anchor_index(tracks, threshold)]
    else:
        matches = [track for track in tracks if track.track_id == anchor_track]
        if not matches:
            raise ValueError(
                f"anchor_track {anchor_track} is not in the sequence; "
                f"its IDs are {[track.track_id for track in tracks]}"
            )
        anchor = matches[0]
    results = []
    if method == "segments":
        place = placement(anchor, target, target_visible, threshold)
        for track in tracks:
            points = _segments_track(track, target, target_visible, place, threshold)
            results.append(Track(track.track_id, points, track.present, track.filled, track.start))
    else:
        fit = linear_fit(anchor, target, target_visible, threshold)
        for track in tracks:
            points = track.points.copy()
            points[..., :2] = fit.apply(points[..., :2])
            results.append(Track(track.track_id, points, track.present, track.filled, track.start))
    return driving.with_tracks(results, width, height)


def _rescale(track: Track, source: tuple[int, int], target: tuple[int, int]) -> Track:
    """The track with the same normalised coordinates on a ``target`` canvas."""
    points = track.points.copy()
    points[..., :2] *= np.array(target, dtype=np.float64) / np.array(source, dtype=np.float64)
    return Track(track.track_id, points, track.present, track.filled, track.start)
