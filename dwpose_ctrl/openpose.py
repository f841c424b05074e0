"""OpenPose layout of DWPose keypoints, and OpenPose JSON in and out (SPEC sections 4 and 6).

:func:`to_openpose` turns the 133 COCO-WholeBody points of each person into the layout the
ControlNet annotator draws: an OpenPose-18 body (with the neck inserted), 6 foot points, 68 face
points and two 21-point hands, with coordinates normalised by the canvas size. It keeps every
score; the visibility rules of the reference live in :class:`OpenPosePerson` and are applied by
the renderer and the JSON writer, never stored as magic coordinates. The threshold of those rules
(0.3 in the reference) is a field of :class:`OpenPoseFrame`, set by :func:`to_openpose`.

:func:`frame_to_json` / :func:`frame_from_json` exchange frames with ComfyUI and the A1111
ControlNet extension (``pose_keypoints_2d``, ``face_keypoints_2d``, ``hand_left_keypoints_2d``,
``hand_right_keypoints_2d``, ``canvas_width``, ``canvas_height``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dwpose_ctrl.files import read_regular_file
from dwpose_ctrl.keypoints import NUM_KEYPOINTS, Person

VISIBILITY_THRESHOLD = 0.3
"""The reference's keypoint threshold t (the default everywhere): body joints and feet are visible
when their score is > t; hand and face points are missing only when their score is < t."""

NUM_BODY = 18
NUM_FEET = 6
NUM_FACE = 68
NUM_HAND = 21

OPENPOSE_BODY_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip

# SPEC 4: after inserting the neck at index 17, OpenPose index OPENPOSE_TARGETS[i] takes the
# point at COCO index COCO_SOURCES[i]; indices 0 (nose), 5 and 11 keep their point.
_COCO_SOURCES = (17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3)
_OPENPOSE_TARGETS = (1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17)
_LEFT_SHOULDER = 5
_RIGHT_SHOULDER = 6
_NECK_INSERT_AT = 17

# Index ranges in the 134-point array once the neck is inserted.
_BODY = slice(0, 18)
_FEET = slice(18, 24)
_FACE = slice(24, 92)
_LEFT_HAND = slice(92, 113)
_RIGHT_HAND = slice(113, 134)

# OpenPose-18 indices of the eyes, appended to the 68 face points in JSON (face has 70 there).
_RIGHT_EYE = 14
_LEFT_EYE = 15


def _frozen_points(value: Any, count: int, name: str) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    if array.shape != (count, 3):
        raise ValueError(
            f"OpenPosePerson.{name} must have shape ({count}, 3) (x, y, score), got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"OpenPosePerson.{name} contains NaN or infinite values")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class OpenPosePerson:
    """One person in OpenPose layout.

    Every array is float64 (N, 3): x and y normalised to [0, 1] by the canvas size (points may
    lie outside), then the score. ``body`` is OpenPose-18 (see ``OPENPOSE_BODY_NAMES``),
    ``feet`` the COCO-WholeBody foot order (left big toe, left small toe, left heel, right big
    toe, right small toe, right heel). Arrays are copied and read-only.
    """

    body: np.ndarray
    feet: np.ndarray
    face: np.ndarray
    left_hand: np.ndarray
    right_hand: np.ndarray

    def __post_init__(self) -> None:
        for name, count in (
            ("body", NUM_BODY),
            ("feet", NUM_FEET),
            ("face", NUM_FACE),
            ("left_hand", NUM_HAND),
            ("right_hand", NUM_HAND),
        ):
            object.__setattr__(self, name, _frozen_points(getattr(self, name), count, name))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpenPosePerson):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("body", "feet", "face", "left_hand", "right_hand")
        )

    __hash__ = None  # type: ignore[assignment]

    def body_visible(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(18,) mask of drawn body joints: score > ``threshold`` (a joint at exactly it is not drawn)."""
        return joint_visible(self.body[:, 2], threshold)

    def feet_visible(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(6,) mask of foot points treated like body joints: score > ``threshold``."""
        return joint_visible(self.feet[:, 2], threshold)

    def face_present(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(68,) mask of face points that are not missing: score >= ``threshold``."""
        return point_present(self.face[:, 2], threshold)

    def left_hand_present(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(21,) mask of left-hand points that are not missing: score >= ``threshold``."""
        return point_present(self.left_hand[:, 2], threshold)

    def right_hand_present(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(21,) mask of right-hand points that are not missing: score >= ``threshold``."""
        return point_present(self.right_hand[:, 2], threshold)


@dataclass(frozen=True)
class OpenPoseFrame:
    """All persons of one image, normalised by a ``width`` x ``height`` canvas (pixels).

    The coordinates are resolution-free; ``width`` and ``height`` are the canvas the map is drawn
    on by default. ``dataclasses.replace(frame, width=..., height=...)`` draws at another size.
    ``visibility_threshold`` is the keypoint threshold the renderer and the JSON writer apply
    (see :data:`VISIBILITY_THRESHOLD`); ``dataclasses.replace`` changes it too.
    """

    people: list[OpenPosePerson]
    width: int
    height: int
    visibility_threshold: float = VISIBILITY_THRESHOLD

    def __post_init__(self) -> None:
        _check_size(self.width, self.height, "OpenPoseFrame")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(
            self,
            "visibility_threshold",
            check_visibility_threshold(self.visibility_threshold, "OpenPoseFrame.visibility_threshold"),
        )
        people = list(self.people)
        for index, person in enumerate(people):
            if not isinstance(person, OpenPosePerson):
                raise TypeError(
                    f"OpenPoseFrame.people[{index}] must be an OpenPosePerson, got {type(person)}"
                )
        object.__setattr__(self, "people", people)


def check_visibility_threshold(value: Any, name: str = "visibility_threshold") -> float:
    """``value`` as a Python float (float64) if it is a real number in [0, 1), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1) such as 0.3, got {value!r}")
    threshold = float(value)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1) (keypoint scores are compared to it; 0.3 is the reference), "
            f"got {value!r}"
        )
    return threshold


def joint_visible(scores: np.ndarray, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """Body/foot rule: visible when score > ``threshold``, compared in float64 as the reference does.

    (A float32 score of 0.3 is 0.30000001 in float64 and therefore visible, as in the reference.)
    """
    return np.asarray(scores, dtype=np.float64) > threshold


def point_present(scores: np.ndarray, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """Hand/face rule: a point is missing only when score < ``threshold`` (so exactly it is drawn)."""
    return ~(np.asarray(scores, dtype=np.float64) < threshold)


def _check_size(width: Any, height: Any, what: str) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{what} {name} must be an int number of pixels, got {value!r}")
        if value <= 0:
            raise ValueError(f"{what} {name} must be > 0 pixels, got {value}")


def to_openpose(
    keypoints: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    visibility_threshold: float = VISIBILITY_THRESHOLD,
) -> OpenPoseFrame:
    """COCO-WholeBody keypoints of P persons to an :class:`OpenPoseFrame` (SPEC 4).

    ``keypoints`` (P, 133, 2) are pixels of a ``width`` x ``height`` canvas, ``scores`` (P, 133).
    Computed in float64 exactly as the reference annotator: the neck is the mean of the two
    shoulders (x, y and score) and its score becomes 1.0 when both shoulder scores are >
    ``visibility_threshold`` (0.3 in the reference), else 0.0; the OpenPose-18 reorder; then
    x / width and y / height. The frame carries ``visibility_threshold`` for drawing and JSON.
    """
    _check_size(width, height, "canvas")
    visibility_threshold = check_visibility_threshold(visibility_threshold)
    keypoints = _as_float_array(keypoints, "keypoints")
    scores = _as_float_array(scores, "scores")
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (P, {NUM_KEYPOINTS}, 2), got {keypoints.shape}")
    if scores.shape != keypoints.shape[:2]:
        raise ValueError(
            f"scores must have shape {keypoints.shape[:2]} to match keypoints, got {scores.shape}"
        )

    points = np.concatenate((keypoints, scores[..., None]), axis=-1)
    neck = np.mean(points[:, [_LEFT_SHOULDER, _RIGHT_SHOULDER]], axis=1)
    neck[:, 2] = np.logical_and(
        points[:, _LEFT_SHOULDER, 2] > visibility_threshold,
        points[:, _RIGHT_SHOULDER, 2] > visibility_threshold,
    )
    points = np.insert(points, _NECK_INSERT_AT, neck, axis=1)
    points[:, _OPENPOSE_TARGETS] = points[:, _COCO_SOURCES]
    points[..., 0] /= float(width)
    points[..., 1] /= float(height)

    people = [
        OpenPosePerson(
            body=person[_BODY],
            feet=person[_FEET],
            face=person[_FACE],
            left_hand=person[_LEFT_HAND],
            right_hand=person[_RIGHT_HAND],
        )
        for person in points
    ]
    return OpenPoseFrame(
        people=people, width=int(width), height=int(height), visibility_threshold=visibility_threshold
    )


def persons_to_openpose(
    persons: Sequence[Person], width: int, height: int, visibility_threshold: float = VISIBILITY_THRESHOLD
) -> OpenPoseFrame:
    """:func:`to_openpose` for :class:`~dwpose_ctrl.keypoints.Person` results.

    The persons' keypoints must be pixels of the ``width`` x ``height`` canvas.
    """
    persons = list(persons)
    for index, person in enumerate(persons):
        if not isinstance(person, Person):
            raise TypeError(f"persons[{index}] must be a dwpose_ctrl Person, got {type(person)}")
    if not persons:
        return to_openpose(
            np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS)), width, height, visibility_threshold
        )
    keypoints = np.stack([np.asarray(person.keypoints, dtype=np.float64) for person in persons])
    scores = np.stack([np.asarray(person.scores, dtype=np.float64) for person in persons])
    return to_openpose(keypoints, scores, width, height, visibility_threshold)


def _as_float_array(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    array = value.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; pass finite numbers")
    return array


# ----------------------------------------------------------------------------------------------
# OpenPose JSON (SPEC 6)

POSE_KEY = "pose_keypoints_2d"
FACE_KEY = "face_keypoints_2d"
LEFT_HAND_KEY = "hand_left_keypoints_2d"
RIGHT_HAND_KEY = "hand_right_keypoints_2d"
FOOT_KEY = "foot_keypoints_2d"
"""Our extension: the 6 COCO-WholeBody foot points, written only for persons with a visible foot
point. ComfyUI and the A1111 extension ignore unknown keys, so the files stay compatible."""

_BODY_25_POINTS = 25
# BODY_25 index of each OpenPose-18 joint (BODY_25 adds the mid hip at 8 and the feet at 19-24).
_BODY_25_TO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# BODY_25 order of the feet is left big toe, small toe, heel, right big toe, small toe, heel.
_BODY_25_FEET = (19, 20, 21, 22, 23, 24)


def _flatten(points: np.ndarray, present: np.ndarray, width: int, height: int) -> list[float]:
    values: list[float] = []
    for (x, y, _), keep in zip(points, present, strict=True):
        if keep:
            values.extend((float(x * width), float(y * height), 1.0))
        else:
            values.extend((0.0, 0.0, 0.0))
    return values


def frame_to_json(frame: OpenPoseFrame, image_width: int, image_height: int) -> dict:
    """OpenPose JSON of a frame (SPEC 6), in the pixels of an ``image_width`` x ``image_height``.

    Each part is a flat ``x, y, c`` list with ``c = 1.0`` for a drawn point and ``0, 0, 0`` for a
    missing one (with t = ``frame.visibility_threshold``, 0.3 by default: body and feet drawn when
    score > t; hands and face when score >= t); coordinates are
    unrounded floats (normalised x times ``image_width``). ``pose_keypoints_2d`` is always
    written; face, hands and feet are ``null`` when none of their points is present, and
    ``foot_keypoints_2d`` is only written when a foot point is visible. The face has 70 points:
    the 68 landmarks, then the right and left eye of the body (OpenPose 14 and 15).
    """
    if not isinstance(frame, OpenPoseFrame):
        raise TypeError(f"frame must be an OpenPoseFrame, got {type(frame).__name__}")
    _check_size(image_width, image_height, "image")
    width, height = int(image_width), int(image_height)
    threshold = frame.visibility_threshold
    people = []
    for person in frame.people:
        body_visible = person.body_visible(threshold)
        entry: dict[str, Any] = {POSE_KEY: _flatten(person.body, body_visible, width, height)}
        face_present = person.face_present(threshold)
        if face_present.any():
            eyes = person.body[[_RIGHT_EYE, _LEFT_EYE]]
            eyes_visible = body_visible[[_RIGHT_EYE, _LEFT_EYE]]
            entry[FACE_KEY] = _flatten(person.face, face_present, width, height) + _flatten(
                eyes, eyes_visible, width, height
            )
        else:
            entry[FACE_KEY] = None
        for key, hand, present in (
            (LEFT_HAND_KEY, person.left_hand, person.left_hand_present(threshold)),
            (RIGHT_HAND_KEY, person.right_hand, person.right_hand_present(threshold)),
        ):
            entry[key] = _flatten(hand, present, width, height) if present.any() else None
        feet_visible = person.feet_visible(threshold)
        if feet_visible.any():
            entry[FOOT_KEY] = _flatten(person.feet, feet_visible, width, height)
        people.append(entry)
    return {"people": people, "canvas_width": width, "canvas_height": height}


def _is_finite_number(value: Any) -> bool:
    """A JSON number that fits a float64: not a bool, string or null; not NaN, inf or 1e400."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _read_canvas_side(data: dict, key: str) -> int:
    if key not in data:
        raise ValueError(
            f"OpenPose JSON has no {key!r}; it needs 'people', 'canvas_width' and 'canvas_height'"
        )
    value = data[key]
    if not _is_finite_number(value) or not float(value).is_integer():
        raise ValueError(f"OpenPose JSON {key!r} must be a whole number of pixels, got {value!r}")
    if value <= 0:
        raise ValueError(f"OpenPose JSON {key!r} must be > 0, got {value!r}")
    return int(value)


def _read_part(
    person: dict, key: str, counts: tuple[int, ...], where: str, width: int, height: int
) -> np.ndarray | None:
    """(N, 3) normalised points of one part, or None when the part is null or absent."""
    values = person.get(key)
    if values is None:
        return None
    if not isinstance(values, list):
        raise ValueError(f"{where}.{key} must be a list of numbers or null, got {type(values).__name__}")
    if len(values) not in tuple(3 * count for count in counts):
        expected = " or ".join(str(3 * count) for count in counts)
        raise ValueError(f"{where}.{key} must hold {expected} numbers (x, y, c per point), got {len(values)}")
    for index, value in enumerate(values):
        if not _is_finite_number(value):
            raise ValueError(f"{where}.{key}[{index}] must be a finite number, got {value!r}")
    points = np.array(values, dtype=np.float64).reshape(-1, 3)
    points[:, 0] /= float(width)
    points[:, 1] /= float(height)
    return points


def _missing(count: int) -> np.ndarray:
    return np.zeros((count, 3), dtype=np.float64)


def frame_from_json(data: dict, visibility_threshold: float = VISIBILITY_THRESHOLD) -> OpenPoseFrame:
    """Read OpenPose JSON (ours, ComfyUI's, the A1111 extension's) back into a frame.

    Coordinates are divided by ``canvas_width`` / ``canvas_height``; ``c`` becomes the score, so
    our ``1.0`` / ``0`` round-trips and real OpenPose confidences follow the visibility rules with
    ``visibility_threshold`` (the frame's threshold, 0.3 by default; at 0 no hand or face point
    is ever missing, so their ``0, 0, 0`` entries count as present). A null or
    absent face, hand or foot part is all ``0, 0, 0``. ``pose_keypoints_2d`` may be OpenPose-18 (54
    numbers) or BODY_25 (75, whose feet are then used); the face may have 68 or 70 points (the two
    pupils are not part of the face layout and are ignored). Raises ``ValueError`` naming the
    offending field for anything else.
    """
    if isinstance(data, list):
        raise ValueError(
            "OpenPose JSON is a list (one entry per image, as ComfyUI's POSE_KEYPOINT); "
            "pass one entry at a time"
        )
    if not isinstance(data, dict):
        raise TypeError(f"OpenPose JSON must be a dict (the parsed JSON object), got {type(data).__name__}")
    visibility_threshold = check_visibility_threshold(visibility_threshold)
    width = _read_canvas_side(data, "canvas_width")
    height = _read_canvas_side(data, "canvas_height")
    if "people" not in data:
        raise ValueError("OpenPose JSON has no 'people' list")
    if not isinstance(data["people"], list):
        raise ValueError(f"OpenPose JSON 'people' must be a list, got {type(data['people']).__name__}")

    people = []
    for index, entry in enumerate(data["people"]):
        where = f"people[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object with keypoint lists, got {type(entry).__name__}")
        if POSE_KEY not in entry:
            raise ValueError(f"{where} has no {POSE_KEY!r}")
        body = _read_part(entry, POSE_KEY, (NUM_BODY, _BODY_25_POINTS), where, width, height)
        feet = _read_part(entry, FOOT_KEY, (NUM_FEET,), where, width, height)
        if body is not None and len(body) == _BODY_25_POINTS:
            if feet is None:
                feet = body[list(_BODY_25_FEET)]
            body = body[list(_BODY_25_TO_18)]
        face = _read_part(entry, FACE_KEY, (NUM_FACE, NUM_FACE + 2), where, width, height)
        left = _read_part(entry, LEFT_HAND_KEY, (NUM_HAND,), where, width, height)
        right = _read_part(entry, RIGHT_HAND_KEY, (NUM_HAND,), where, width, height)
        people.append(
            OpenPosePerson(
                body=_missing(NUM_BODY) if body is None else body,
                feet=_missing(NUM_FEET) if feet is None else feet,
                face=_missing(NUM_FACE) if face is None else face[:NUM_FACE],
                left_hand=_missing(NUM_HAND) if left is None else left,
                right_hand=_missing(NUM_HAND) if right is None else right,
            )
        )
    return OpenPoseFrame(people=people, width=width, height=height, visibility_threshold=visibility_threshold)


def dumps_frame(frame: OpenPoseFrame, image_width: int, image_height: int, indent: int | None = None) -> str:
    """:func:`frame_to_json` as JSON text (floats written in full precision)."""
    return json.dumps(frame_to_json(frame, image_width, image_height), indent=indent, allow_nan=False)


def loads_frame(text: str | bytes, visibility_threshold: float = VISIBILITY_THRESHOLD) -> OpenPoseFrame:
    """:func:`frame_from_json` of JSON text; invalid JSON raises ``ValueError``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid OpenPose JSON text: {error}") from error
    except RecursionError as error:
        raise ValueError("not OpenPose JSON: the text is nested too deeply to parse") from error
    return frame_from_json(data, visibility_threshold)


def write_json(
    path: str | os.PathLike,
    frame: OpenPoseFrame,
    image_width: int,
    image_height: int,
    indent: int | None = None,
) -> None:
    """Write :func:`frame_to_json` to ``path`` (UTF-8)."""
    text = dumps_frame(frame, image_width, image_height, indent=indent)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


#: Most bytes read from an OpenPose JSON file (a frame of 100 whole-body persons is about 0.5 MB).
MAX_JSON_BYTES = 64 << 20


def read_json(path: str | os.PathLike, visibility_threshold: float = VISIBILITY_THRESHOLD) -> OpenPoseFrame:
    """Read an OpenPose JSON file written by :func:`write_json`, ComfyUI or the A1111 extension.

    Only a regular file is read (a FIFO or a device raises
    :class:`~dwpose_ctrl.files.NotRegularFileError` at once instead of hanging), and only up to
    :data:`MAX_JSON_BYTES`: a larger file raises ``ValueError`` without being read whole.
    """
    return loads_frame(read_regular_file(path, MAX_JSON_BYTES), visibility_threshold)
