"""Augmentation geometry: keypoints follow the pixels through every step; flips swap left and right."""

from __future__ import annotations

import numpy as np
import pytest

from dwpose_ctrl import topdown
from dwpose_ctrl.keypoints import COCO_WHOLEBODY
from training.data import transforms as T

INPUT_SIZE = (128, 96)  # (h, w)


def _marker_image(points: np.ndarray, shape=(240, 320)) -> np.ndarray:
    """Black image with a 5x5 block of a unique colour at each integer point."""
    image = np.zeros((*shape, 3), np.uint8)
    for index, (x, y) in enumerate(points.astype(int)):
        image[y - 2 : y + 3, x - 2 : x + 3] = (40 + 50 * index, 255 - 40 * index, 120)
    return image


def _colour_at(image: np.ndarray, point: np.ndarray) -> np.ndarray:
    x, y = np.round(point).astype(int)
    return image[y, x].astype(int)


POINTS = np.array([[100.0, 60.0], [180.0, 90.0], [140.0, 160.0], [210.0, 190.0]])


def _state(image, points=POINTS):
    return T.initial_state(image, np.array([80, 40, 240, 210.0]), points, np.ones(len(points)), 1.25)


def test_initial_state_is_the_inference_box():
    state = _state(np.zeros((240, 320, 3), np.uint8))
    np.testing.assert_allclose(state.center, [160, 125])
    np.testing.assert_allclose(state.scale, [200, 212.5])


def test_unrotated_crop_equals_inference_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    state = _state(image)
    crop, _, matrix = T.topdown_affine(state, INPUT_SIZE)
    batch = topdown.build_crops(image, np.array([[80, 40, 240, 210.0]]), INPUT_SIZE)
    np.testing.assert_array_equal(matrix, topdown.warp_matrix(batch.centers[0], batch.scales[0], (96, 128)))
    np.testing.assert_array_equal(topdown.normalise(crop), batch.inputs[0])


@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0])
@pytest.mark.parametrize("scale_factor", [0.8, 1.3])
def test_keypoints_follow_pixels_through_the_affine(rotation, scale_factor):
    image = _marker_image(POINTS)
    state = _state(image)
    state = T.replace(
        state,
        scale=state.scale * scale_factor,
        rotation=rotation,
        center=state.center + np.array([7.0, -5.0]),
    )
    crop, keypoints, _ = T.topdown_affine(state, INPUT_SIZE)
    for index, point in enumerate(keypoints):
        if 2 <= point[0] < 94 and 2 <= point[1] < 126:
            np.testing.assert_allclose(_colour_at(crop, point), _colour_at(image, POINTS[index]), atol=12)


def test_rotation_direction_turns_the_box_up_vector():
    # +90 degrees turns the box's up direction (0, -1) to +x in image coordinates, so a point to
    # the right of the centre lands on the crop's vertical centre line, above its middle.
    state = T.replace(_state(np.zeros((240, 320, 3), np.uint8)), rotation=90.0)
    _, _, matrix = T.topdown_affine(state, INPUT_SIZE)
    right_of_centre = T.apply_affine(np.array([[state.center[0] + 50, state.center[1]]]), matrix)[0]
    assert right_of_centre[0] == pytest.approx(48, abs=1e-3) and right_of_centre[1] < 64


def test_flip_moves_pixels_and_swaps_left_right():
    rng = np.random.default_rng(1)
    points = np.zeros((133, 2))
    points[:, 0] = rng.integers(10, 300, 133)
    points[:, 1] = rng.integers(10, 230, 133)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    state = T.initial_state(image, np.array([50, 30, 250, 200.0]), points, np.arange(133) % 2, 1.25)
    flipped = T.horizontal_flip(state, COCO_WHOLEBODY.flip_indices)
    np.testing.assert_array_equal(flipped.image, image[:, ::-1])
    assert flipped.center[0] == 319 - 150
    # left wrist (9) of the flipped sample is the mirrored right wrist (10) of the original
    np.testing.assert_allclose(flipped.keypoints[9], [319 - points[10, 0], points[10, 1]])
    np.testing.assert_allclose(flipped.keypoints[91 + 4], [319 - points[112 + 4, 0], points[112 + 4, 1]])
    assert flipped.visibility[9] == state.visibility[10]
    # every keypoint sits on the same pixel value after the flip as before
    for original, mirrored in zip(points, flipped.keypoints[COCO_WHOLEBODY.flip_indices], strict=True):
        x, y = original.astype(int)
        assert mirrored[0] == 319 - x and np.array_equal(flipped.image[y, int(mirrored[0])], image[y, x])
    # a second flip gives the original back
    twice = T.horizontal_flip(flipped, COCO_WHOLEBODY.flip_indices)
    np.testing.assert_allclose(twice.keypoints, state.keypoints)
    np.testing.assert_array_equal(twice.image, image)


def test_half_body_picks_upper_or_lower_points():
    points = np.zeros((17, 2))
    points[:11] = np.column_stack([np.linspace(100, 140, 11), np.linspace(50, 100, 11)])
    points[11:] = np.column_stack([np.linspace(110, 130, 6), np.linspace(150, 220, 6)])
    state = T.initial_state(
        np.zeros((240, 320, 3), np.uint8), np.array([90, 40, 150, 230.0]), points, np.ones(17), 1.25
    )
    config = T.AugmentationConfig(half_body_probability=1.0, half_body_upper_priority=1.0)
    upper = T.random_half_body(
        state, np.random.default_rng(0), tuple(range(11)), tuple(range(11, 17)), config
    )
    np.testing.assert_allclose(upper.center, points[:11].mean(axis=0))
    np.testing.assert_allclose(upper.scale, (points[:11].max(0) - points[:11].min(0)) * 1.5)
    lower_config = T.replace(config, half_body_upper_priority=0.0)
    lower = T.random_half_body(
        state, np.random.default_rng(0), tuple(range(11)), tuple(range(11, 17)), lower_config
    )
    np.testing.assert_allclose(lower.center, points[11:].mean(axis=0))
    few = T.replace(state, visibility=np.r_[np.ones(8), np.zeros(9)].astype(np.float32))
    assert (
        T.random_half_body(few, np.random.default_rng(0), tuple(range(11)), tuple(range(11, 17)), config)
        is few
    )


def test_box_transform_ranges_and_probabilities():
    state = _state(np.zeros((8, 8, 3), np.uint8))
    config = T.AugmentationConfig()
    rotations, factors, shifted = [], [], 0
    for seed in range(400):
        out = T.random_box_transform(state, np.random.default_rng(seed), config)
        rotations.append(out.rotation)
        factors.append(out.scale[0] / state.scale[0])
        shift = (out.center - state.center) / state.scale
        assert np.all(np.abs(shift) <= 0.16 + 1e-12)
        shifted += bool(np.any(shift != 0))
    assert max(np.abs(rotations)) <= 80 and 0.5 < np.mean(np.array(rotations) != 0) < 0.7
    assert min(factors) >= 0.6 and max(factors) <= 1.4
    assert 0.2 < shifted / 400 < 0.4
    final = T.AugmentationConfig().final_stage()
    assert (final.shift_factor, final.scale_range, final.rotate_factor, final.dropout_probability) == (
        0.0, (0.75, 1.25), 60.0, 0.5,
    )  # fmt: skip


def test_photometric_steps_keep_shape_and_dropout_hole_size():
    rng = np.random.default_rng(3)
    image = rng.integers(1, 255, (64, 48, 3), dtype=np.uint8)
    jittered = T.hsv_jitter(image, np.random.default_rng(5), (5, 30, 30))
    assert jittered.shape == image.shape and jittered.dtype == np.uint8
    np.testing.assert_array_equal(T.hsv_jitter(image, rng, (0, 0, 0)), image)
    blurred = T.random_blur(image, np.random.default_rng(0), 1.0, (3, 7))
    assert blurred.shape == image.shape and not np.array_equal(blurred, image)
    dropped = T.random_dropout(image, np.random.default_rng(0), 1.0, (0.2, 0.4))
    holes = np.all(dropped == 0, axis=2)
    rows, cols = np.nonzero(holes)
    assert (
        0.2 * 64 - 1 <= np.ptp(rows) + 1 <= 0.4 * 64 + 1 and 0.2 * 48 - 1 <= np.ptp(cols) + 1 <= 0.4 * 48 + 1
    )
    assert holes.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)


def test_full_pipeline_keypoints_follow_pixels():
    points = np.array([[120.0, 70.0], [190.0, 100.0], [150.0, 170.0]])
    image = _marker_image(points)
    config = T.replace(
        T.AugmentationConfig(),
        hsv_deltas=(0, 0, 0),
        blur_probability=0,
        median_blur_probability=0,
        dropout_probability=0,
        flip_probability=0.5,
        rotate_probability=1.0,
    )
    for seed in range(6):
        result = T.augment_instance(
            image, np.array([90, 50, 230, 200.0]), points, np.ones(3), INPUT_SIZE, config,
            np.random.default_rng(seed), np.array([0, 1, 2]),
        )  # fmt: skip
        for index, point in enumerate(result.keypoints):
            if 3 <= point[0] < 93 and 3 <= point[1] < 125:
                np.testing.assert_allclose(
                    _colour_at(result.image, point), _colour_at(image, points[index]), atol=12
                )


def test_pipeline_is_a_pure_function_of_the_generator():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 100, 3), dtype=np.uint8)
    points = rng.uniform(10, 90, (133, 2))
    args = (image, np.array([10, 10, 90, 110.0]), points, np.ones(133), (64, 64), T.AugmentationConfig())
    first = T.augment_instance(*args, np.random.default_rng(42), COCO_WHOLEBODY.flip_indices, (0,), (11,))
    second = T.augment_instance(*args, np.random.default_rng(42), COCO_WHOLEBODY.flip_indices, (0,), (11,))
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.keypoints, second.keypoints)
