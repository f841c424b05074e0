"""Top-down crop geometry for the pose model and its inverse (SPEC section 3).

Box -> centre and scale (padding 1.25, aspect fixed to the model's w/h) -> the reference's exact
3-point affine -> ``warpAffine`` -> normalised float32 batch; and crop-space locations back to
image pixels. Every step keeps the reference's float dtypes, so results match it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BOX_PADDING = 1.25
PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
PIXEL_STD = np.array([58.395, 57.12, 57.375])
# float32((v - mean) / std) computed in float64 for every uint8 value v, per channel: (3, 256).
_NORMALISED_UINT8 = (
    (np.arange(256, dtype=np.float64)[None, :] - PIXEL_MEAN[:, None]) / PIXEL_STD[:, None]
).astype(np.float32)


@dataclass(frozen=True)
class CropBatch:
    """Pose-model inputs (N, 3, h, w) float32 and each crop's centre and scale (N, 2) float64."""

    inputs: np.ndarray
    centers: np.ndarray
    scales: np.ndarray


def box_to_center_scale(boxes: np.ndarray, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy boxes -> centres (N, 2) = midpoints and scales (N, 2) = sizes * ``padding``."""
    x1, y1, x2, y2 = (boxes[:, i : i + 1] for i in range(4))
    centers = np.hstack([x1 + x2, y1 + y2]) * 0.5
    scales = np.hstack([x2 - x1, y2 - y1]) * padding
    return centers, scales


def fix_aspect_ratio(scales: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow the short side of each (w, h) scale so that w / h equals ``aspect_ratio``."""
    widths, heights = scales[:, :1], scales[:, 1:]
    return np.where(
        widths > heights * aspect_ratio,
        np.hstack([widths, widths / aspect_ratio]),
        np.hstack([heights * aspect_ratio, heights]),
    )


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` rotated 90 degrees anticlockwise about ``b`` (in ``a``'s dtype)."""
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=a.dtype)


def warp_matrix(center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine taking the (aspect-fixed) box to a model input of (width, height) ``input_size``.

    Source points ``centre`` and ``centre + (0, -scale_w/2)`` (float64 sums stored as float32),
    destination ``(w/2, h/2)`` and ``(w/2, h/2 - w/2)``; each third point is the first rotated
    90 degrees anticlockwise about the second, in float32; ``cv2.getAffineTransform``.
    """
    width, height = input_size
    source = np.zeros((3, 2), dtype=np.float32)
    source[0] = center
    source[1] = center + np.array([0.0, scale[0] * -0.5])
    source[2] = _third_point(source[0], source[1])
    target = np.zeros((3, 2), dtype=np.float32)
    target[0] = [width * 0.5, height * 0.5]
    target[1] = np.array([width * 0.5, height * 0.5]) + np.array([0.0, width * -0.5])
    target[2] = _third_point(target[0], target[1])
    return cv2.getAffineTransform(source, target)


def crop(image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Warp one person to a (height, width, 3) crop; linear interpolation, black border."""
    width, height = input_size
    return cv2.warpAffine(
        image, warp_matrix(center, scale, input_size), (int(width), int(height)), flags=cv2.INTER_LINEAR
    )


def normalise(crop_image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (3, h, w) float32 with the ImageNet mean/std (computed in float64).

    For uint8 crops the result only depends on the value and the channel, so it is read from a
    table holding exactly ``float32((v - mean) / std)`` (computed in float64) for the 256 values:
    the same numbers as the arithmetic, several times faster. ``out`` receives the result if given.
    """
    if out is None:
        out = np.empty((3, *crop_image.shape[:2]), dtype=np.float32)
    if crop_image.dtype == np.uint8:
        for channel in range(3):
            np.take(_NORMALISED_UINT8[channel], crop_image[:, :, channel], out=out[channel])
    else:
        out[...] = ((crop_image - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return out


def build_crops(image: np.ndarray, boxes: np.ndarray, model_size: tuple[int, int]) -> CropBatch:
    """Crops for every (N, 4) box of an RGB uint8 image; ``model_size`` is the model's (height, width)."""
    height, width = model_size
    input_size = (width, height)
    centers, scales = box_to_center_scale(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    scales = fix_aspect_ratio(scales, width / height)
    inputs = np.empty((len(boxes), 3, height, width), dtype=np.float32)
    for index, (center, scale) in enumerate(zip(centers, scales, strict=True)):
        normalise(crop(image, center, scale, input_size), out=inputs[index])
    return CropBatch(inputs, centers, scales)


def to_image_pixels(
    locations: np.ndarray, model_size: tuple[int, int], centers: np.ndarray, scales: np.ndarray
) -> np.ndarray:
    """Crop-space locations (N, K, 2) -> image pixels: ``loc / (w, h) * scale + centre - scale / 2``."""
    height, width = model_size
    size = np.array([width, height])
    return locations / size * scales[:, None, :] + centers[:, None, :] - scales[:, None, :] / 2
