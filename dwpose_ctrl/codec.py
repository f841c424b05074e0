"""SimCC codec: the one place that maps between keypoints and 1-D classification bins.

Inference decodes with :func:`decode_simcc`; the trainer encodes labels with the encoder in
this module, so both sides agree on the split ratio and bin layout (SPEC sections 3 and 9).
"""

from __future__ import annotations

from dataclasses import dataclass

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
            "SimCC outputs must be (N, K, bins) with matching N and K, "
            f"got {simcc_x.shape} and {simcc_y.shape}"
        )
    x_bins = np.argmax(simcc_x, axis=2)
    y_bins = np.argmax(simcc_y, axis=2)
    locations = np.stack((x_bins, y_bins), axis=-1).astype(np.float32)
    max_x = np.take_along_axis(simcc_x, x_bins[..., None], axis=2)[..., 0]
    max_y = np.take_along_axis(simcc_y, y_bins[..., None], axis=2)[..., 0]
    scores = np.minimum(max_x, max_y).astype(np.float32)
    locations[scores <= 0] = -1
    return locations / np.float32(split_ratio), scores


# --- Encoding (training labels, SPEC section 9) --------------------------------------------------


def default_simcc_sigma(input_size: tuple[int, int]) -> tuple[float, float]:
    """The published label sigmas (x, y) for a (height, width) input: ``sqrt(side / 8)`` to 2 decimals.

    Gives (4.9, 5.66) at 256x192 and (6.0, 6.93) at 384x288, the values of the RTMPose configs.
    """
    height, width = input_size
    return round(float(np.sqrt(width / 8)), 2), round(float(np.sqrt(height / 8)), 2)


@dataclass(frozen=True)
class SimccLabels:
    """Training labels of one instance: ``target_x`` (K, 2w), ``target_y`` (K, 2h), ``weights`` (K,)."""

    target_x: np.ndarray
    target_y: np.ndarray
    weights: np.ndarray


def encode_simcc(
    keypoints: np.ndarray,
    visibility: np.ndarray,
    input_size: tuple[int, int],
    sigma: tuple[float, float],
    split_ratio: float = SIMCC_SPLIT_RATIO,
) -> SimccLabels:
    """Gaussian SimCC labels for crop-space keypoints (K, 2) with visibility (K,).

    ``input_size`` is the model's (height, width), ``sigma`` the (x, y) Gaussian widths in bins.
    The labels are ``target_x`` (K, 2w) and ``target_y`` (K, 2h) float32 (peak 1, not
    normalised) and ``weights`` (K,) float32. The centre bin is ``np.around(split_ratio * kp)``
    (half to even); points with visibility < 0.5 get a zero target and weight 0, and so do points whose whole
    ``mu +- 3 sigma`` window lies outside the bins on either axis; otherwise the weight is the
    visibility.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visibility = np.asarray(visibility, dtype=np.float32)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2 or visibility.shape != keypoints.shape[:1]:
        raise ValueError(
            f"keypoints must be (K, 2) and visibility (K,), got {keypoints.shape} and {visibility.shape}"
        )
    height, width = input_size
    bins = np.array([round(width * split_ratio), round(height * split_ratio)], dtype=np.int64)
    sigma_array = np.asarray(sigma, dtype=np.float64)
    centers = np.around(keypoints * split_ratio).astype(np.int64)
    radius = sigma_array * 3
    outside = np.any((centers - radius >= bins) | (centers + radius + 1 < 0), axis=1)
    keep = (visibility >= 0.5) & ~outside
    weights = np.where(keep, visibility, 0).astype(np.float32)
    target_x = np.exp(-((np.arange(bins[0]) - centers[:, :1]) ** 2) / (2 * sigma_array[0] ** 2))
    target_y = np.exp(-((np.arange(bins[1]) - centers[:, 1:]) ** 2) / (2 * sigma_array[1] ** 2))
    target_x[~keep] = 0
    target_y[~keep] = 0
    return SimccLabels(target_x.astype(np.float32), target_y.astype(np.float32), weights)
