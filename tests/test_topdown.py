"""Top-down crop geometry: centre/scale, aspect fix, the 3-point affine, and its inverse."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dwpose_ctrl.codec import decode_simcc
from dwpose_ctrl.topdown import (
    box_to_center_scale,
    build_crops,
    fix_aspect_ratio,
    normalise,
    to_image_pixels,
    warp_matrix,
)

MODEL = (64, 48)  # (height, width)


def test_center_scale_with_padding():
    centers, scales = box_to_center_scale(np.array([[10.0, 20.0, 110.0, 220.0]]))
    np.testing.assert_array_equal(centers, [[60, 120]])
    np.testing.assert_array_equal(scales, [[125, 250]])


@pytest.mark.parametrize(
    ("scale", "fixed"), [((125, 250), (187.5, 250)), ((300, 100), (300, 400)), ((75, 100), (75, 100))]
)
def test_aspect_fix_grows_the_short_side(scale, fixed):
    np.testing.assert_array_equal(fix_aspect_ratio(np.array([scale], float), 0.75), [fixed])


def test_warp_matrix_is_the_three_point_construction():
    center, scale = np.array([100.3, 50.7]), np.array([60.0, 80.0])
    matrix = warp_matrix(center, scale, (48, 64))
    assert matrix.dtype == np.float64 and matrix.shape == (2, 3)
    source = np.float32([center, center + np.array([0, -30]), [center[0] - 30, center[1] - 30]])
    target = np.float32([[24, 32], [24, 8], [0, 8]])
    np.testing.assert_array_equal(matrix, cv2.getAffineTransform(source, target))
    # the box maps onto the crop: uniform scale 48 / 60, centre to the crop centre
    np.testing.assert_allclose(matrix @ [*center, 1], [24, 32], atol=1e-4)
    np.testing.assert_allclose(matrix[:, :2], np.eye(2) * 0.8, atol=1e-6)


def test_normalise_uses_imagenet_mean_and_std_in_rgb_order():
    crop = np.zeros((2, 2, 3), np.uint8)
    crop[..., 0] = 255
    out = normalise(crop)
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    assert out[0, 0, 0] == np.float32((255 - 123.675) / 58.395)
    assert out[2, 1, 1] == np.float32(-103.53 / 57.375)


def test_a_dot_in_the_image_lands_on_the_crop_pixel_that_maps_back_to_it():
    """Whole-image box 48x64 -> scale (60, 80): crop (u, v) sees image (1.25 u - 6, 1.25 v - 8)."""
    image = np.zeros((64, 48, 3), np.uint8)
    image[22, 19] = 255
    crops = build_crops(image, np.array([[0, 0, 48, 64]]), MODEL)
    np.testing.assert_array_equal(crops.centers, [[24, 32]])
    np.testing.assert_array_equal(crops.scales, [[60, 80]])
    red = crops.inputs[0, 0]
    v, u = np.unravel_index(np.argmax(red), red.shape)
    assert (u, v) == (20, 24)
    # a SimCC peak at bins (2u, 2v) decodes to crop (u, v) and back to the dot's pixel
    simcc_x = np.zeros((1, 1, 96), np.float32)
    simcc_y = np.zeros((1, 1, 128), np.float32)
    simcc_x[0, 0, 2 * u], simcc_y[0, 0, 2 * v] = 1.0, 1.0
    locations, scores = decode_simcc(simcc_x, simcc_y)
    pixels = to_image_pixels(locations, MODEL, crops.centers, crops.scales)
    np.testing.assert_array_equal(pixels, [[[19.0, 22.0]]])
    assert scores[0, 0] == 1.0


def test_half_bins_and_rejected_points_back_project_exactly():
    locations = np.array([[[0.5, 63.5], [-1.0, -1.0]]], np.float32)
    pixels = to_image_pixels(locations, MODEL, np.array([[100.0, 200.0]]), np.array([[96.0, 128.0]]))
    # x = loc / 48 * 96 + 100 - 48; y = loc / 64 * 128 + 200 - 64
    np.testing.assert_array_equal(pixels, [[[53.0, 263.0], [50.0, 134.0]]])


def test_crops_outside_the_image_are_black():
    image = np.full((40, 40, 3), 200, np.uint8)
    crops = build_crops(image, np.array([[30.0, 30.0, 70.0, 70.0]]), MODEL)
    # the crop's bottom-right corner lies outside the image: zero pixels, normalised
    np.testing.assert_array_equal(
        crops.inputs[0, :, -1, -1], normalise(np.zeros((1, 1, 3), np.uint8))[:, 0, 0]
    )
    assert crops.inputs.shape == (1, 3, 64, 48)


def test_no_boxes_give_an_empty_batch():
    crops = build_crops(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 4)), MODEL)
    assert crops.inputs.shape == (0, 3, 64, 48)
