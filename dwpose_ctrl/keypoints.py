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
