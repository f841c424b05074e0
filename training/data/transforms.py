"""Top-down training augmentations of the RTMPose recipe (SPEC section 9).

Geometric steps change a :class:`CropState` (the full image, the crop's centre / scale /
rotation and the keypoints) and :func:`topdown_affine` cuts the crop with one affine, so pixels
and keypoints always move together. Photometric steps then act on the crop. Every step draws
from the ``numpy.random.Generator`` it is given, so a sample is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from dwpose_ctrl import topdown


@dataclass(frozen=True)
class AugmentationConfig:
    """Parameters of every augmentation (defaults: the RTMPose recipe for all but the last epochs)."""

    bbox_padding: float = 1.25
    flip_probability: float = 0.5
    half_body_probability: float = 0.3
    half_body_min_keypoints: int = 9
    half_body_min_upper: int = 2
    half_body_min_lower: int = 3
    half_body_upper_priority: float = 0.7
    half_body_padding: float = 1.5
    shift_factor: float = 0.16
    shift_probability: float = 0.3
    scale_range: tuple[float, float] = (0.6, 1.4)
    scale_probability: float = 1.0
    rotate_factor: float = 80.0
    rotate_probability: float = 0.6
    hsv_deltas: tuple[int, int, int] = (5, 30, 30)
    blur_probability: float = 0.1
    median_blur_probability: float = 0.1
    blur_kernel_range: tuple[int, int] = (3, 7)
    dropout_probability: float = 1.0
    dropout_size_range: tuple[float, float] = (0.2, 0.4)

    def final_stage(self) -> AugmentationConfig:
        """The recipe's last-epochs pipeline: no shift, scale [0.75, 1.25], rotate 60, dropout p 0.5."""
        return replace(
            self, shift_factor=0.0, scale_range=(0.75, 1.25), rotate_factor=60.0, dropout_probability=0.5
        )

    @classmethod
    def none(cls) -> AugmentationConfig:
        """No augmentation at all: only the padded box crop (validation / deterministic tests)."""
        return cls(
            flip_probability=0.0,
            half_body_probability=0.0,
            shift_probability=0.0,
            scale_probability=0.0,
            rotate_probability=0.0,
            hsv_deltas=(0, 0, 0),
            blur_probability=0.0,
            median_blur_probability=0.0,
            dropout_probability=0.0,
        )


@dataclass
class CropState:
    """A person on its full image on the way to a crop.

    ``center`` / ``scale`` (2,) float64 are the crop box in image pixels (scale before the aspect
    fix), ``rotation`` the crop's rotation in degrees, ``keypoints`` (K, 2) float32 and
    ``visibility`` (K,) float32.
    """

    image: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    rotation: float
    keypoints: np.ndarray
    visibility: np.ndarray


def truncated_normal(rng: np.random.Generator, limit: float = 1.0) -> float:
    """A standard normal sample conditioned on ``|x| <= limit`` (rejection sampling)."""
    while True:
        value = float(rng.standard_normal())
        if -limit <= value <= limit:
            return value


def initial_state(
    image: np.ndarray, box: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray, padding: float
) -> CropState:
    """The padded box of an instance (xyxy) as a crop state (no aspect fix yet)."""
    centers, scales = topdown.box_to_center_scale(np.asarray(box, dtype=np.float64).reshape(1, 4), padding)
    return CropState(
        image=image,
        center=centers[0],
        scale=scales[0],
        rotation=0.0,
        keypoints=np.array(keypoints, dtype=np.float32).reshape(-1, 2),
        visibility=np.array(visibility, dtype=np.float32).reshape(-1),
    )


def horizontal_flip(state: CropState, flip_indices: np.ndarray) -> CropState:
    """Mirror the image; pixel column ``x`` goes to ``W - 1 - x`` and left/right points swap."""
    width = state.image.shape[1]
    keypoints = state.keypoints.copy()
    keypoints[:, 0] = width - 1 - keypoints[:, 0]
    center = state.center.copy()
    center[0] = width - 1 - center[0]
    return replace(
        state,
        image=np.ascontiguousarray(state.image[:, ::-1]),
        center=center,
        keypoints=keypoints[flip_indices],
        visibility=state.visibility[flip_indices],
    )


def random_flip(
    state: CropState, rng: np.random.Generator, probability: float, flip_indices: np.ndarray
) -> CropState:
    return horizontal_flip(state, flip_indices) if rng.random() < probability else state


def half_body_box(
    state: CropState,
    rng: np.random.Generator,
    upper_ids: tuple[int, ...],
    lower_ids: tuple[int, ...],
    config: AugmentationConfig,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and scale of the upper or lower body's visible points, or None when too few."""
    visible = state.visibility > 0
    upper = [i for i in upper_ids if visible[i]]
    lower = [i for i in lower_ids if visible[i]]
    prefer_upper = rng.random() < config.half_body_upper_priority
    if len(upper) < config.half_body_min_upper and len(lower) < config.half_body_min_lower:
        return None
    if len(lower) < config.half_body_min_lower:
        selected = upper
    elif len(upper) < config.half_body_min_upper:
        selected = lower
    else:
        selected = upper if prefer_upper else lower
    points = state.keypoints[selected].astype(np.float64)
    center = points.mean(axis=0)
    scale = (points.max(axis=0) - points.min(axis=0)) * config.half_body_padding
    return center, scale


def random_half_body(
    state: CropState,
    rng: np.random.Generator,
    upper_ids: tuple[int, ...],
    lower_ids: tuple[int, ...],
    config: AugmentationConfig,
) -> CropState:
    """With probability p (and >= ``half_body_min_keypoints`` visible points) crop half the body."""
    if not upper_ids and not lower_ids:
        return state
    if state.visibility.sum() < config.half_body_min_keypoints:
        return state
    if rng.random() >= config.half_body_probability:
        return state
    box = half_body_box(state, rng, upper_ids, lower_ids, config)
    if box is None:
        return state
    return replace(state, center=box[0], scale=box[1])


def random_box_transform(state: CropState, rng: np.random.Generator, config: AugmentationConfig) -> CropState:
    """Shift (times the scale), rescale and rotate the crop with truncated-normal amounts."""
    offset = np.array([truncated_normal(rng), truncated_normal(rng)]) * config.shift_factor
    if rng.random() >= config.shift_probability:
        offset[:] = 0.0
    low, high = config.scale_range
    factor = truncated_normal(rng) * (high - low) / 2 + (high + low) / 2
    if rng.random() >= config.scale_probability:
        factor = 1.0
    rotation = truncated_normal(rng) * config.rotate_factor
    if rng.random() >= config.rotate_probability:
        rotation = 0.0
    return replace(
        state, center=state.center + offset * state.scale, scale=state.scale * factor, rotation=rotation
    )


def crop_matrix(
    center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int], rotation: float
) -> np.ndarray:
    """2x3 affine from image pixels to a (height, width) crop of the aspect-fixed box, rotated.

    The unrotated crop is exactly the inference crop (``dwpose_ctrl.topdown.warp_matrix``);
    ``rotation`` degrees turns the box's up direction by that angle in image coordinates (the
    crop content turns the other way), i.e. the image is first rotated by ``-rotation`` about
    the centre.
    """
    height, width = input_size
    matrix = topdown.warp_matrix(center, scale, (width, height))
    if rotation == 0.0:
        return matrix
    angle = np.deg2rad(-rotation)
    cos, sin = np.cos(angle), np.sin(angle)
    rotate = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    rotate[:2, 2] = center - rotate[:2, :2] @ center
    return (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ rotate)[:2]


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(K, 2) points through a 2x3 affine, float32."""
    return (points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def topdown_affine(
    state: CropState, input_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fix the aspect to the model's w/h, warp (linear, black border); crop, keypoints, matrix."""
    height, width = input_size
    scale = topdown.fix_aspect_ratio(state.scale.reshape(1, 2), width / height)[0]
    matrix = crop_matrix(state.center, scale, input_size, state.rotation)
    crop = cv2.warpAffine(state.image, matrix, (width, height), flags=cv2.INTER_LINEAR)
    return crop, apply_affine(state.keypoints, matrix), matrix


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, deltas: tuple[int, int, int]) -> np.ndarray:
    """YOLOX-style HSV jitter of an RGB uint8 image: each of h/s/v shifted (or not) by up to its delta."""
    if not any(deltas):
        return image
    gains = rng.uniform(-1, 1, 3) * np.asarray(deltas)
    gains *= rng.integers(0, 2, 3)
    gains = gains.astype(np.int16)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def _odd_kernel(rng: np.random.Generator, kernel_range: tuple[int, int]) -> int:
    low, high = kernel_range
    return int(rng.choice(np.arange(low | 1, high + 1, 2)))


def random_blur(image: np.ndarray, rng: np.random.Generator, probability: float, kernel_range) -> np.ndarray:
    """Box blur with an odd kernel drawn from ``kernel_range``, with probability p."""
    if rng.random() >= probability:
        return image
    size = _odd_kernel(rng, kernel_range)
    return cv2.blur(image, (size, size))


def random_median_blur(
    image: np.ndarray, rng: np.random.Generator, probability: float, kernel_range
) -> np.ndarray:
    """Median blur with an odd kernel drawn from ``kernel_range``, with probability p."""
    if rng.random() >= probability:
        return image
    return cv2.medianBlur(image, _odd_kernel(rng, kernel_range))


def random_dropout(
    image: np.ndarray, rng: np.random.Generator, probability: float, size_range: tuple[float, float]
) -> np.ndarray:
    """Coarse dropout: one black hole, each side a uniform fraction of the image side in ``size_range``."""
    if rng.random() >= probability:
        return image
    height, width = image.shape[:2]
    hole_h = max(1, round(rng.uniform(*size_range) * height))
    hole_w = max(1, round(rng.uniform(*size_range) * width))
    top = int(rng.integers(0, height - hole_h + 1))
    left = int(rng.integers(0, width - hole_w + 1))
    image = image.copy()
    image[top : top + hole_h, left : left + hole_w] = 0
    return image


@dataclass(frozen=True)
class TopDownResult:
    """A crop (h, w, 3) uint8 RGB with its keypoints (K, 2) float32 and visibility (K,)."""

    image: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray


def augment_instance(
    image: np.ndarray,
    box: np.ndarray,
    keypoints: np.ndarray,
    visibility: np.ndarray,
    input_size: tuple[int, int],
    config: AugmentationConfig,
    rng: np.random.Generator,
    flip_indices: np.ndarray,
    upper_ids: tuple[int, ...] = (),
    lower_ids: tuple[int, ...] = (),
) -> TopDownResult:
    """The full recipe on one person: box -> flip -> half body -> box transform -> affine -> photometric."""
    state = initial_state(image, box, keypoints, visibility, config.bbox_padding)
    state = random_flip(state, rng, config.flip_probability, flip_indices)
    state = random_half_body(state, rng, upper_ids, lower_ids, config)
    state = random_box_transform(state, rng, config)
    crop, crop_keypoints, _ = topdown_affine(state, input_size)
    crop = hsv_jitter(crop, rng, config.hsv_deltas)
    crop = random_blur(crop, rng, config.blur_probability, config.blur_kernel_range)
    crop = random_median_blur(crop, rng, config.median_blur_probability, config.blur_kernel_range)
    crop = random_dropout(crop, rng, config.dropout_probability, config.dropout_size_range)
    return TopDownResult(crop, crop_keypoints, state.visibility)
