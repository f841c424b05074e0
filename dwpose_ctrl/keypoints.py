"""COCO-WholeBody keypoint metadata and the typed per-person result.

The 133 points are ordered body (0-16), feet (17-22), face (23-90), left hand (91-111),
right hand (112-132), as in COCO-WholeBody v1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_KEYPOINTS = 133

BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

PART_SLICES: dict[str, slice] = {
    "body": BODY,
    "foot": FEET,
    "face": FACE,
    "lefthand": LEFT_HAND,
    "righthand": RIGHT_HAND,
    "wholebody": slice(0, NUM_KEYPOINTS),
}

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
FOOT_NAMES = (
    "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    """One detected person.

    ``keypoints`` are (K, 2) float64 x, y in the pixels of the image given to the detector,
    ``scores`` their (K,) SimCC confidences (raw logit maxima, not probabilities),
    ``box`` the person box (x1, y1, x2, y2) in the same pixels and ``box_score`` its score.
    ``box_score`` is ``None`` when no detector box was used (the reference mode's whole-image
    fallback). ``track_id`` is set by video tracking.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    box: np.ndarray
    box_score: float | None
    track_id: int | None = field(default=None, compare=False)

    def visible(self, threshold: float = 0.3) -> np.ndarray:
        """Boolean mask of the keypoints whose score exceeds ``threshold``."""
        return self.scores > threshold

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints and scores of one part: body, foot, face, lefthand, righthand, wholebody."""
        try:
            part = PART_SLICES[name]
        except KeyError:
            raise ValueError(f"unknown part {name!r}; expected one of {sorted(PART_SLICES)}") from None
        return self.keypoints[part], self.scores[part]


# --- Keypoint layouts for training and evaluation -------------------------------------------------

FACE_NAMES = tuple(f"face-{i}" for i in range(68))
_FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
LEFT_HAND_NAMES = ("left_hand_root", *(f"left_{finger}{j}" for finger in _FINGERS for j in range(1, 5)))
RIGHT_HAND_NAMES = ("right_hand_root", *(f"right_{finger}{j}" for finger in _FINGERS for j in range(1, 5)))
WHOLEBODY_NAMES = BODY_NAMES + FOOT_NAMES + FACE_NAMES + LEFT_HAND_NAMES + RIGHT_HAND_NAMES

# OKS sigmas of COCO-WholeBody v1.0 (the dataset's metainfo); the first 17 are the COCO body sigmas.
WHOLEBODY_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
    0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.068, 0.066, 0.066,
    0.092, 0.094, 0.094, 0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031,
    0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043, 0.041, 0.045,
    0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015,
    0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017,
    0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010,
    0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009,
    0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.010,
    0.008, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035,
    0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.020, 0.019,
    0.022, 0.031, 0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024,
    0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.020,
    0.019, 0.022, 0.031,
)  # fmt: skip

BODY_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
FOOT_FLIP_PAIRS = ((17, 20), (18, 21), (19, 22))
# 68-point face (iBUG order): jaw line, eyebrows, nostrils, eyes, outer and inner lips.
_FACE_MIRROR = (
    *((i, 16 - i) for i in range(8)),
    *((17 + i, 26 - i) for i in range(5)),
    (31, 35), (32, 34),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),
    (60, 64), (61, 63), (65, 67),
)  # fmt: skip
FACE_FLIP_PAIRS = tuple((FACE.start + a, FACE.start + b) for a, b in _FACE_MIRROR)
HAND_FLIP_PAIRS = tuple((LEFT_HAND.start + i, RIGHT_HAND.start + i) for i in range(21))
WHOLEBODY_FLIP_PAIRS = BODY_FLIP_PAIRS + FOOT_FLIP_PAIRS + FACE_FLIP_PAIRS + HAND_FLIP_PAIRS

UPPER_BODY_IDS = tuple(range(0, 11))
LOWER_BODY_IDS = tuple(range(11, 17))
WHOLEBODY_LOWER_BODY_IDS = tuple(range(11, 23))  # mmpose's metainfo types the six feet 'lower' too


@dataclass(frozen=True)
class KeypointMetadata:
    """A keypoint layout: what the trainer and the evaluator need to know about the points.

    ``flip_pairs`` are the (left, right) index pairs that swap under a horizontal flip,
    ``sigmas`` the per-point OKS sigmas, ``parts`` the named slices evaluated separately (the
    evaluator reads the COCO-WholeBody annotation fields of the parts it knows), and
    ``upper_body_ids`` / ``lower_body_ids`` the points the half-body augmentation chooses from.
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    parts: dict[str, slice]
    upper_body_ids: tuple[int, ...] = ()
    lower_body_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        count = len(self.names)
        if count == 0:
            raise ValueError(f"keypoint layout {self.name!r} has no keypoints")
        if len(set(self.names)) != count:
            raise ValueError(f"keypoint layout {self.name!r} has duplicate names")
        if len(self.sigmas) != count:
            raise ValueError(f"keypoint layout {self.name!r}: {len(self.sigmas)} sigmas for {count} names")
        seen: set[int] = set()
        for pair in self.flip_pairs:
            if len(pair) != 2 or not all(0 <= i < count for i in pair) or pair[0] == pair[1]:
                raise ValueError(f"keypoint layout {self.name!r}: bad flip pair {pair} for {count} points")
            if seen & set(pair):
                raise ValueError(f"keypoint layout {self.name!r}: point of flip pair {pair} used twice")
            seen.update(pair)
        for ids in (self.upper_body_ids, self.lower_body_ids):
            if not all(0 <= i < count for i in ids):
                raise ValueError(f"keypoint layout {self.name!r}: body ids out of range 0..{count - 1}")
        for part, part_slice in self.parts.items():
            if not (0 <= part_slice.start < part_slice.stop <= count):
                raise ValueError(
                    f"keypoint layout {self.name!r}: part {part!r} {part_slice} outside 0..{count}"
                )

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def flip_indices(self) -> np.ndarray:
        """Permutation ``p`` with ``flipped[i] = original[p[i]]`` (identity where a point has no pair)."""
        permutation = np.arange(self.num_keypoints)
        for left, right in self.flip_pairs:
            permutation[left], permutation[right] = right, left
        return permutation

    @property
    def sigma_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)


COCO_WHOLEBODY = KeypointMetadata(
    name="coco_wholebody",
    names=WHOLEBODY_NAMES,
    flip_pairs=WHOLEBODY_FLIP_PAIRS,
    sigmas=WHOLEBODY_SIGMAS,
    parts=dict(PART_SLICES),
    upper_body_ids=UPPER_BODY_IDS,
    lower_body_ids=WHOLEBODY_LOWER_BODY_IDS,
)

COCO_BODY = KeypointMetadata(
    name="coco_body",
    names=BODY_NAMES,
    flip_pairs=BODY_FLIP_PAIRS,
    sigmas=WHOLEBODY_SIGMAS[:17],
    parts={"body": BODY},
    upper_body_ids=UPPER_BODY_IDS,
    lower_body_ids=LOWER_BODY_IDS,
)

KEYPOINT_LAYOUTS: dict[str, KeypointMetadata] = {
    layout.name: layout for layout in (COCO_WHOLEBODY, COCO_BODY)
}
