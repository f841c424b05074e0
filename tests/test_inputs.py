"""Every accepted input becomes RGB uint8 HWC; every refused one gets a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dwpose_ctrl.inputs import MAX_ASPECT_RATIO, MAX_PIXELS, check_image_size, to_rgb, to_rgb_list
from dwpose_ctrl.resize import resize_to_resolution, resolution_size

RGB = np.array([[[255, 0, 0], [0, 128, 255]], [[10, 20, 30], [250, 251, 252]]], np.uint8)


def test_rgb_array_passes_through_unchanged():
    out = to_rgb(RGB)
    np.testing.assert_array_equal(out, RGB)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_grey_arrays_are_repeated_to_three_channels():
    grey = np.array([[0, 100], [200, 255]], np.uint8)
    expected = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_rgb(grey), expected)
    np.testing.assert_array_equal(to_rgb(grey[:, :, None]), expected)


def test_rgba_is_composited_over_white_like_the_reference():
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 128]]], np.uint8)
    out = to_rgb(rgba)
    alpha = np.float32(128) / np.float32(255.0)
    half = (np.float32([200, 100, 0]) * alpha + np.float32(255.0) * (np.float32(1.0) - alpha)).astype(
        np.uint8
    )
    np.testing.assert_array_equal(out, [[[200, 100, 0], [255, 255, 255], half]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("RGB", RGB),
        ("L", None),
        ("CMYK", None),
    ],
)
def test_pil_modes_match_pil_conversion(mode, expected):
    image = Image.fromarray(RGB).convert(mode)
    want = np.asarray(image.convert("RGB")) if expected is None else expected
    np.testing.assert_array_equal(to_rgb(image), want)


def test_pil_rgba_la_and_transparent_palette_composite_over_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]
    white = np.full(3, 255, np.uint8)
    out = to_rgb(Image.fromarray(rgba))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[1, 1], white)
    la = Image.fromarray(np.array([[[40, 255], [40, 0]]], np.uint8)[:, :, [0, 0, 0, 1]]).convert("LA")
    np.testing.assert_array_equal(to_rgb(la), [[[40, 40, 40], [255, 255, 255]]])
    palette = Image.fromarray(np.array([[0, 1]], np.uint8)).convert("P")
    palette.putpalette([0, 0, 0, 9, 8, 7] + [0] * 762)
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(to_rgb(palette), [[[255, 255, 255], [9, 8, 7]]])
    plain_palette = Image.fromarray(np.array([[0, 1]], np.uint8)).convert("P")
    plain_palette.putpalette([5, 6, 7, 9, 8, 7] + [0] * 762)
    np.testing.assert_array_equal(to_rgb(plain_palette), [[[5, 6, 7], [9, 8, 7]]])


def test_sixteen_bit_inputs_map_with_round_v_over_257():
    values = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    expected = np.array([0, 0, 1, 1, 128, 255], np.uint8)
    np.testing.assert_array_equal(to_rgb(values)[0, :, 0], expected)
    pil16 = Image.fromarray(values)
    assert pil16.mode == "I;16"
    np.testing.assert_array_equal(to_rgb(pil16)[0, :, 1], expected)
    pil32 = Image.fromarray(values.astype(np.int32))
    assert pil32.mode == "I"
    np.testing.assert_array_equal(to_rgb(pil32)[0, :, 2], expected)


def test_float_arrays_in_unit_range_round_half_to_even():
    values = np.array([[0.0, 0.5, 1.0, 2.5 / 255, 3.5 / 255]], np.float64)
    np.testing.assert_array_equal(to_rgb(values)[0, :, 0], [0, 128, 255, 2, 4])
    exact32 = np.array([[0.0, 0.5, 1.0, 0.25]], np.float32)  # 63.75 -> 64
    np.testing.assert_array_equal(to_rgb(exact32)[0, :, 0], [0, 128, 255, 64])
    np.testing.assert_array_equal(to_rgb(exact32.astype(np.float16))[0, :, 0], [0, 128, 255, 64])
    np.testing.assert_array_equal(to_rgb(Image.fromarray(exact32))[0, :, 0], [0, 128, 255, 64])


def test_torch_tensors_chw_and_bchw():
    torch = pytest.importorskip("torch")
    chw = torch.tensor(RGB.transpose(2, 0, 1) / 255.0, dtype=torch.float32)
    np.testing.assert_array_equal(to_rgb(chw), RGB)
    np.testing.assert_array_equal(to_rgb(torch.from_numpy(RGB.transpose(2, 0, 1).copy())), RGB)
    images, batched = to_rgb_list(torch.stack([chw, chw.flip(0)]).to(torch.float16))
    assert batched and len(images) == 2
    np.testing.assert_array_equal(images[0], RGB)
    np.testing.assert_array_equal(images[1], RGB[:, :, ::-1])
    with pytest.raises(ValueError, match="is a batch"):
        to_rgb(chw[None])
    with pytest.raises(ValueError, match="channels"):
        to_rgb(torch.zeros(2, 5, 5))
    with pytest.raises(TypeError, match="float"):
        to_rgb(torch.zeros(3, 5, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb(chw * 255)


def test_file_paths_apply_exif_orientation(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:4, :4] = [255, 0, 0]
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    png = tmp_path / "photo.png"
    image.save(png, exif=exif)
    np.testing.assert_array_equal(to_rgb(png), np.rot90(pixels, -1))
    jpeg = tmp_path / "photo.jpg"
    image.save(jpeg, exif=exif, quality=100)
    out = to_rgb(str(jpeg))
    assert out.shape == (20, 10, 3)
    assert out[1, -2, 0] > 200 and out[1, -2, 1] < 60  # the red top-left corner is now top-right
    plain = tmp_path / "plain.png"
    Image.fromarray(RGB).save(plain)
    np.testing.assert_array_equal(to_rgb(plain), RGB)


def test_lists_and_batches():
    images, batched = to_rgb_list([RGB, Image.fromarray(RGB), RGB.astype(np.float64) / 255])
    assert batched and all(np.array_equal(image, RGB) for image in images)
    images, batched = to_rgb_list(np.stack([RGB, RGB]))
    assert batched and len(images) == 2
    images, batched = to_rgb_list(RGB)
    assert not batched and len(images) == 1
    assert to_rgb_list([]) == ([], True)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (None, TypeError, "cannot use a builtins.NoneType"),
        (42, TypeError, "as an image"),
        (b"bytes", TypeError, "as an image"),
        (np.zeros((4, 4), np.int64), TypeError, "astype"),
        (np.zeros((4, 4), bool), TypeError, "dtype bool"),
        (np.zeros((4, 4), np.complex64), TypeError, "dtype complex64"),
        (np.zeros(5, np.uint8), ValueError, "expected HW or HWC"),
        (np.zeros((3, 4, 5), np.uint8), ValueError, "channels last"),
        (np.zeros((3, 8, 8, 8, 3), np.uint8), ValueError, "expected HW or HWC"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, "empty"),
        (np.zeros((5, 0), np.uint8), ValueError, "empty"),
        (np.array([[0.5, np.nan]]), ValueError, "NaN"),
        (np.array([[0.5, np.inf]], np.float32), ValueError, "NaN or infinite"),
        (np.array([[0.0, 255.0]]), ValueError, r"must lie in \[0, 1\]"),
        (np.array([[-0.1, 0.5]]), ValueError, r"must lie in \[0, 1\]"),
        (np.zeros((1, 40), np.uint8), ValueError, "aspect ratio"),
        ([[RGB]], TypeError, "nested"),
        ("https://example.com/a.jpg", ValueError, "URL"),
        ("no/such/file.png", FileNotFoundError, "does not exist"),
    ],
)
def test_bad_inputs_are_refused_clearly(bad, error, message):
    with pytest.raises(error, match=message):
        to_rgb_list(bad)


def test_unreadable_file_is_a_value_error(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        to_rgb(path)


def test_size_limits_are_checked_before_allocation():
    check_image_size(100, 100 * int(MAX_ASPECT_RATIO))
    with pytest.raises(ValueError, match="aspect ratio"):
        check_image_size(1, 100_000)
    with pytest.raises(ValueError, match="MAX_PIXELS"):
        check_image_size(20_000, 20_000)
    # a huge PIL image is refused from its header size alone, before any pixel is decoded
    lazy = Image.new("L", (1, 1))
    lazy._size = (30_000, 30_000)
    with pytest.raises(ValueError, match="MAX_PIXELS"):
        to_rgb(lazy)
    assert MAX_PIXELS == 134_217_728


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        ((480, 640), 512, (512, 704)),  # 682.67 -> 10.67 * 64
        ((427, 640), 512, (512, 768)),
        ((1000, 1000), 512, (512, 512)),
        ((100, 150), 256, (256, 384)),
        ((64, 96), 64, (64, 128)),  # 96 / 64 = 1.5 rounds to 2
    ],
)
def test_resolution_rule(size, resolution, expected):
    assert resolution_size(*size, resolution) == expected


def test_resolution_rounds_half_to_even():
    # 160 x 224 at 64: k = 0.4, 224 * 0.4 / 64 = 1.4 -> 1
    assert resolution_size(160, 224, 64) == (64, 64)
    # sides at exactly n.5 multiples of 64 round to even: 5 * 64 * 0.5 -> 2.5 -> 2, 7 * 64 * 0.5 -> 3.5 -> 4
    assert resolution_size(256, 320, 128) == (128, 128)
    assert resolution_size(256, 448, 128) == (128, 256)


def test_resize_uses_lanczos_up_and_area_down():
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        resize_to_resolution(image, 256), cv2.resize(image, (384, 256), interpolation=cv2.INTER_LANCZOS4)
    )
    np.testing.assert_array_equal(
        resize_to_resolution(image, 64), cv2.resize(image, (128, 64), interpolation=cv2.INTER_AREA)
    )


@pytest.mark.parametrize(
    ("resolution", "error"),
    [(0, ValueError), (-5, ValueError), (10, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_bad_resolutions(resolution, error):
    with pytest.raises(error):
        resolution_size(100, 100, resolution)


def test_resolution_target_over_the_pixel_limit_is_refused():
    with pytest.raises(ValueError, match="smaller resolution"):
        resolution_size(100, 3000, 5000)
