"""The reference's resolution rule (SPEC section 1), one place for detection and output sizes.

``k = resolution / min(H, W)``; each side becomes ``round(side * k / 64) * 64`` (numpy round,
half to even); the image is resized with ``INTER_LANCZOS4`` when ``k > 1``, else ``INTER_AREA``.
"""

from __future__ import annotations

import cv2
import numpy as np

from dwpose_ctrl.inputs import pixel_limit


def resolution_size(
    height: int, width: int, resolution: int, max_pixels: int | None = None
) -> tuple[int, int]:
    """Target (height, width) for ``resolution`` applied to a ``height`` x ``width`` image.

    Raises ``ValueError`` when ``resolution`` is not a positive integer, when a side would round
    to 0 pixels, or when the target would exceed ``max_pixels`` (default: the current
    :data:`dwpose_ctrl.inputs.MAX_PIXELS`).
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise TypeError(f"resolution must be an integer number of pixels, got {type(resolution).__name__}")
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    k = float(resolution) / min(float(height), float(width))
    target_height = int(np.round(float(height) * k / 64.0)) * 64
    target_width = int(np.round(float(width) * k / 64.0)) * 64
    if target_height < 64 or target_width < 64:
        raise ValueError(
            f"resolution {resolution} gives a {target_width}x{target_height} image for a {width}x{height} "
            "input (sides are rounded to multiples of 64); use a resolution of at least 64"
        )
    limit = pixel_limit(max_pixels)
    if target_height * target_width > limit:
        raise ValueError(
            f"resolution {resolution} would resize the {width}x{height} input to "
            f"{target_width}x{target_height} "
            f"pixels, more than the limit of {limit}; use a smaller resolution"
        )
    return target_height, target_width


def resize_to_resolution(image: np.ndarray, resolution: int, max_pixels: int | None = None) -> np.ndarray:
    """Resize an HWC uint8 image by the reference rule (LANCZOS4 when enlarging, else AREA)."""
    height, width = image.shape[:2]
    target_height, target_width = resolution_size(height, width, resolution, max_pixels)
    k = float(resolution) / min(float(height), float(width))
    interpolation = cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA
    return cv2.resize(image, (target_width, target_height), interpolation=interpolation)
