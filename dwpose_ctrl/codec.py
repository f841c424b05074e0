"""SimCC codec: the one place that maps between keypoints and 1-D classification bins.

Inference decodes with :func:`decode_simcc`; the trainer encodes labels with the encoder in
this module, so both sides agree on the split ratio and bin layout (SPEC sections 3 and 9).
"""

from __future__ import annotations

import numpy as np

SIMCC_SPLIT_RATIO = 2.0


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT_RATIO
) -> tuple[np.ndarray, np.ndarray]:
    """Decode SimCC logits (N, K, Wx) and (N, K, Wy) to crop-space locations and scores.

    Returns ``locations`` (N, K, 2) float32 in model-input pixels and ``scores`` (N, K) float32:
    the argmax bin per axis divided by ``split_ratio``, and the smaller of the two axis maxima.
    Where the score is <= 0 the location is -1 (before the division), as the reference does.
    """
    if simcc_x.ndim != 3 or simcc_y.ndim != 3 or simcc_x.shape[:2] != simcc_y.shape[:2]:
        raise ValueError(
            f"SimCC outputs must be (N, K, bins) with matching N and K, got {simcc_x.shape} and {simcc_y.shape}"
        )
    x_bins = np.argmax(simcc_x, axis=2)
    y_bins = np.argmax(simcc_y, axis=2)
    locations = np.stack((x_bins, y_bins), axis=-1).astype(np.float32)
    max_x = np.take_along_axis(simcc_x, x_bins[..., None], axis=2)[..., 0]
    max_y = np.take_along_axis(simcc_y, y_bins[..., None], axis=2)[..., 0]
    scores = np.minimum(max_x, max_y).astype(np.float32)
    locations[scores <= 0] = -1
    return locations / np.float32(split_ratio), scores
