"""Drawing styles of video models and drawing at the output resolution: exact pixels.

Expected widths and colours are computed here from the projects' published rules (MusePose
``smart_width``, MimicMotion's score-scaled colours and BGR-to-RGB conversion), not read from
:mod:`dwpose_ctrl.styles`.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from test_render import make_person, pixel

from dwpose_ctrl.openpose import OpenPoseFrame
from dwpose_ctrl.render import RenderOptions, draw_openpose, render_map
from dwpose_ctrl.styles import STYLE_NAMES, get_style

BLACK = (0, 0, 0)
ANNOTATOR_BODY = RenderOptions(include_hand=False, include_face=False)
MUSEPOSE_BODY = RenderOptions(include_hand=False, include_face=False, style="musepose")
MIMIC = RenderOptions(style="mimicmotion")


def musepose_width(length: float) -> int:
    """MusePose's smart_width: 1 below 5 px, then one more per doubling, 8 from 320 px on."""
    for width, limit in enumerate((5, 10, 20, 40, 80, 160, 320), start=1):
        if length < limit:
            return width
    return 8


def column_run(image: np.ndarray, x: int, color: tuple[int, int, int]) -> int:
    """How many pixels of column ``x`` have exactly ``color``."""
    return int((image[:, x] == color).all(axis=1).sum())


def horizontal_line_rows(thickness: int) -> int:
    """Rows OpenCV fills across a horizontal line of that thickness (away from its ends)."""
    return 1 if thickness == 1 else 2 * ((thickness + 1) // 2) + 1


# ---------------------------------------------------------------------------------------- table


def test_the_style_table_and_a_clear_error_for_unknown_names() -> None:
    assert STYLE_NAMES == ("annotator", "musepose", "mimicmotion")
    assert RenderOptions().style == "annotator"
    assert not RenderOptions().draw_at_output_resolution
    with pytest.raises(ValueError, match="annotator, musepose, mimicmotion"):
        RenderOptions(style="animateanyone")
    with pytest.raises(ValueError, match="unknown drawing style"):
        get_style("MusePose")


@pytest.mark.parametrize("length", [0.0, 4.99, 5.0, 9.99, 10.0, 39.9, 40.0, 100.0, 319.99, 320.0, 5000.0])
def test_musepose_width_steps(length: float) -> None:
    assert get_style("musepose").width_for_length(length) == musepose_width(length)


# ------------------------------------------------------------------------------------- musepose


@pytest.mark.parametrize("length", [16, 30, 60, 100, 200, 400])
def test_musepose_limb_half_width_follows_the_limb_length(length: int) -> None:
    # Limb 0 (neck 1 -> right shoulder 2), horizontal: the ellipse is 2 * half-width + 1 rows at its middle.
    width = length + 40
    person = make_person(width, 40, body={1: (20, 20, 1.0), 2: (20 + length, 20, 1.0)})
    frame = OpenPoseFrame([person], width, 40)
    middle = 20 + length // 2
    musepose = draw_openpose(frame, options=MUSEPOSE_BODY)
    annotator = draw_openpose(frame, options=ANNOTATOR_BODY)
    assert column_run(musepose, middle, (153, 0, 0)) == 2 * musepose_width(length) + 1
    assert column_run(annotator, middle, (153, 0, 0)) == 2 * 4 + 1
    assert pixel(musepose, 20 + 4, 20) == (255, 85, 0)  # joints: radius 4, undimmed, as the annotator
    assert pixel(musepose, 20 - 5, 20) == BLACK


def test_musepose_width_is_measured_on_the_canvas_drawn_on() -> None:
    # The same normalised limb is 50 px long on a 100 px canvas and 200 px long on a 400 px one.
    person = make_person(100, 100, body={1: (25, 50, 1.0), 2: (75, 50, 1.0)})
    small = draw_openpose(OpenPoseFrame([person], 100, 100), options=MUSEPOSE_BODY)
    large = draw_openpose(OpenPoseFrame([person], 400, 400), options=MUSEPOSE_BODY)
    assert column_run(small, 50, (153, 0, 0)) == 2 * musepose_width(50) + 1
    assert column_run(large, 200, (153, 0, 0)) == 2 * musepose_width(200) + 1


def test_musepose_stick_scaling_multiplies_the_length_width() -> None:
    # A 1200 px long side: xinsir factor min(2 + 1200 // 1000, 7) = 3.
    person = make_person(1200, 100, body={1: (100, 50, 1.0), 2: (300, 50, 1.0)})
    options = dataclasses.replace(MUSEPOSE_BODY, stick_scaling=True)
    image = draw_openpose(OpenPoseFrame([person], 1200, 100), options=options)
    assert column_run(image, 200, (153, 0, 0)) == 2 * 3 * musepose_width(200) + 1


@pytest.mark.parametrize(("length", "style"), [(200, "musepose"), (30, "musepose"), (200, "annotator")])
def test_hand_edge_thickness_per_style(length: int, style: str) -> None:
    person = make_person(300, 60, right_hand={0: (40, 30, 1.0), 1: (40 + length, 30, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 300, 60), options=RenderOptions(style=style))
    thickness = musepose_width(length) if style == "musepose" else 2
    assert column_run(image, 40 + length // 2, (255, 0, 0)) == horizontal_line_rows(thickness)


@pytest.mark.parametrize(("style", "radius"), [("annotator", 4), ("musepose", 3)])
def test_hand_point_radius_per_style(style: str, radius: int) -> None:
    person = make_person(40, 40, left_hand={5: (20, 20, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 40, 40), options=RenderOptions(style=style))
    assert pixel(image, 20 + radius, 20) == (0, 0, 255)
    assert pixel(image, 20 + radius + 1, 20) == BLACK


def test_musepose_draws_at_short_side_1024_then_resizes_by_area() -> None:
    # Output 96 x 64: canvas short side 1024, long side int(96 * 16 // 2 * 2) = 1536.
    person = make_person(64, 96, body={1: (16, 48, 1.0), 2: (48, 48, 1.0)})
    frame = OpenPoseFrame([person], 64, 96)
    drawn = render_map(frame, (96, 64), MUSEPOSE_BODY)
    canvas = draw_openpose(dataclasses.replace(frame, width=1024, height=1536), options=MUSEPOSE_BODY)
    # On the canvas the limb is 512 px long: half-width 8, 17 rows, i.e. 17/16 rows of the output.
    assert column_run(canvas, 512, (153, 0, 0)) == 2 * musepose_width(512) + 1
    assert np.array_equal(drawn, cv2.resize(canvas, (64, 96), interpolation=cv2.INTER_AREA))
    assert np.array_equal(render_map(frame, (1536, 1024), MUSEPOSE_BODY), canvas)


# ---------------------------------------------------------------------------------- mimicmotion


def swapped(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """MimicMotion draws its RGB colour lists on a canvas it then converts from BGR to RGB."""
    return color[2], color[1], color[0]


def test_mimicmotion_limb_and_joint_colours_are_scaled_by_confidence() -> None:
    person = make_person(100, 60, body={1: (20, 30, 0.8), 2: (80, 30, 0.9)})
    image = draw_openpose(OpenPoseFrame([person], 100, 60), options=MIMIC)
    limb = int(int(255 * (0.8 * 0.9)) * 0.6)  # red times both scores, then the 0.6 dimming
    assert limb == 109
    assert pixel(image, 50, 30) == swapped((limb, 0, 0))
    assert column_run(image, 50, swapped((limb, 0, 0))) == 2 * 4 + 1  # fixed half-width 4
    assert pixel(image, 20, 30) == swapped((int(255 * 0.8), int(85 * 0.8), 0))  # neck, colour 1
    assert pixel(image, 80, 30) == swapped((int(255 * 0.9), int(170 * 0.9), 0))  # right shoulder, colour 2
    assert pixel(image, 80 + 4, 30) != BLACK and pixel(image, 80 + 5, 30) == BLACK


def test_mimicmotion_body_joints_keep_the_visibility_threshold() -> None:
    person = make_person(60, 60, body={0: (20, 20, 0.3), 2: (40, 40, 0.31)})
    image = draw_openpose(OpenPoseFrame([person], 60, 60), options=MIMIC)
    assert pixel(image, 20, 20) == BLACK
    assert pixel(image, 40, 40) == swapped((int(255 * 0.31), int(170 * 0.31), 0))


def test_mimicmotion_hand_edges_and_points() -> None:
    matplotlib_colors = pytest.importorskip("matplotlib.colors")
    # Edge 1 joins hand points 1 and 2; point 1 scores 0.5, point 2 scores 0.7.
    person = make_person(200, 60, left_hand={1: (40, 30, 0.5), 2: (160, 30, 0.7)})
    image = draw_openpose(OpenPoseFrame([person], 200, 60), options=MIMIC)
    brightness = int(0.5 * 0.7 * 255)
    rgb = matplotlib_colors.hsv_to_rgb([1 / 20, 1.0, 1.0]) * brightness
    expected_edge = tuple(round(channel) for channel in rgb)
    assert expected_edge == (89, 27, 0)
    assert pixel(image, 100, 30) == swapped(expected_edge)
    assert column_run(image, 100, swapped(expected_edge)) == horizontal_line_rows(2)
    assert pixel(image, 40, 30) == swapped((0, 0, int(0.5 * 255)))  # hand points: blue times score
    assert pixel(image, 160 + 4, 30) == swapped((0, 0, int(0.7 * 255)))


def test_mimicmotion_draws_hand_and_face_points_below_the_threshold_dimly() -> None:
    person = make_person(60, 60, face={0: (15, 15, 0.1)}, right_hand={0: (45, 45, 0.2)})
    mimic = draw_openpose(OpenPoseFrame([person], 60, 60), options=MIMIC)
    annotator = draw_openpose(OpenPoseFrame([person], 60, 60))
    assert not annotator.any()
    grey = int(0.1 * 255)
    assert pixel(mimic, 15 + 3, 15) == (grey, grey, grey) and pixel(mimic, 15 + 4, 15) == BLACK
    assert pixel(mimic, 45, 45) == (int(0.2 * 255), 0, 0)


def test_mimicmotion_draws_at_short_side_2160_then_resizes_linearly() -> None:
    # MimicMotion's own output size, 576 x 1024: canvas 2160 x 3840 (3.75 times larger).
    person = make_person(576, 1024, body={1: (144, 512, 0.9), 2: (432, 512, 0.9)}, face={3: (288, 200, 0.8)})
    frame = OpenPoseFrame([person], 576, 1024)
    drawn = render_map(frame, (1024, 576), MIMIC)
    canvas = draw_openpose(dataclasses.replace(frame, width=2160, height=3840), options=MIMIC)
    assert np.array_equal(drawn, cv2.resize(canvas, (576, 1024), interpolation=cv2.INTER_LINEAR))
    limb = swapped((int(int(255 * (0.9 * 0.9)) * 0.6), 0, 0))
    # On the canvas: rows 1916-1924 (half-width 4 around row 1920). Output row y samples canvas
    # rows around (y + 0.5) * 3.75 - 0.5: rows 511 (1917.6) and 512 (1921.4) fall inside, 510
    # (1913.9) and 513 (1925.1) outside, so the limb is 2 rows thin on the 1024 px map.
    assert column_run(canvas, 1080, limb) == 9
    assert column_run(drawn, 288, limb) == 2
    assert pixel(drawn, 288, 511) == pixel(drawn, 288, 512) == limb


def test_mimicmotion_overlay_swaps_the_drawing_not_the_photo() -> None:
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[..., 0] = 200  # a red photo stays red (dimmed by the body pass)
    person = make_person(40, 40, body={0: (20, 20, 1.0)})
    image = draw_openpose(OpenPoseFrame([person], 40, 40), canvas=photo, options=MIMIC)
    assert pixel(image, 2, 2) == (120, 0, 0)
    assert pixel(image, 20, 20) == swapped((255, 0, 0))


# ------------------------------------------------------------------ draw at output resolution


def test_render_map_default_is_drawing_at_the_frame_size_then_linear_resize() -> None:
    rng = np.random.default_rng(3)
    body = {joint: (*rng.uniform(5, 59, size=2), 1.0) for joint in range(18)}
    hand = {point: (*rng.uniform(5, 59, size=2), 1.0) for point in range(21)}
    frame = OpenPoseFrame([make_person(64, 64, body=body, left_hand=hand)], 64, 64)
    expected = cv2.resize(draw_openpose(frame), (192, 256), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(render_map(frame, (256, 192)), expected)
    assert np.array_equal(render_map(frame), draw_openpose(frame))


def intermediate_levels(image: np.ndarray, palette: set[int]) -> tuple[int, int]:
    """(pixels, distinct values) of the red channel that are neither black nor a drawn colour."""
    red = image[..., 0]
    between = red[(red != 0) & ~np.isin(red, list(palette))]
    return int(between.size), len(np.unique(between))


def test_drawing_at_the_output_resolution_leaves_no_blurred_edges() -> None:
    # One red limb (neck - right shoulder, at 153) and its joints (255, 255 and 255, 85, 0),
    # detected on a 128 x 96 image, written at 1024 x 768.
    person = make_person(96, 128, body={1: (20.3, 40.7, 1.0), 2: (70.6, 90.2, 1.0)})
    frame = OpenPoseFrame([person], 96, 128)
    upscaled = render_map(frame, (1024, 768), ANNOTATOR_BODY)
    sharp = render_map(
        frame, (1024, 768), dataclasses.replace(ANNOTATOR_BODY, draw_at_output_resolution=True)
    )
    assert np.array_equal(
        sharp, draw_openpose(dataclasses.replace(frame, width=768, height=1024), options=ANNOTATOR_BODY)
    )
    palette = {153, 255}
    sharp_pixels, sharp_values = intermediate_levels(sharp, palette)
    blurred_pixels, blurred_values = intermediate_levels(upscaled, palette)
    assert (sharp_pixels, sharp_values) == (0, 0)
    assert blurred_values >= 50 and blurred_pixels >= 1000
    # The limb is still where it was: its middle pixel is red in both.
    middle = (int((20.3 + 70.6) / 2 * 8), int((40.7 + 90.2) / 2 * 8))
    assert pixel(sharp, *middle) == pixel(upscaled, *middle) == (153, 0, 0)


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_draw_at_output_resolution_overrides_every_style_canvas(style: str) -> None:
    person = make_person(64, 64, body={1: (10, 30, 1.0), 2: (50, 30, 1.0)}, face={0: (30, 10, 1.0)})
    frame = OpenPoseFrame([person], 64, 64)
    options = RenderOptions(style=style, draw_at_output_resolution=True)
    expected = draw_openpose(dataclasses.replace(frame, width=300, height=200), options=options)
    assert np.array_equal(render_map(frame, (200, 300), options), expected)


def test_render_map_overlay_resizes_the_photo_to_the_canvas() -> None:
    photo = np.full((64, 64, 3), 100, np.uint8)
    frame = OpenPoseFrame([make_person(64, 64, body={0: (32, 32, 1.0)})], 64, 64)
    options = RenderOptions(draw_at_output_resolution=True)
    image = render_map(frame, (256, 256), options, background=photo)
    assert pixel(image, 5, 5) == (60, 60, 60)
    assert pixel(image, 128 + 4, 128) == (255, 0, 0) and pixel(image, 128 + 5, 128) == (60, 60, 60)


@pytest.mark.parametrize("size", [(0, 10), (10,), (10.5, 10), "512", (True, 4), (-4, 4)])
def test_render_map_refuses_bad_output_sizes(size) -> None:
    frame = OpenPoseFrame([], 16, 16)
    with pytest.raises(ValueError, match="output_size must be"):
        render_map(frame, size)


def test_render_settings_refuse_an_unknown_style_up_front() -> None:
    from dwpose_ctrl.engines.pose import RenderSettings

    assert RenderSettings(style="musepose").render_options.style == "musepose"
    with pytest.raises(ValueError, match="unknown drawing style 'wan'"):
        RenderSettings(style="wan")


def off_palette_pixels(image: np.ndarray) -> int:
    """Pixels whose colour is none of the annotator's drawn colours (nor black)."""
    from dwpose_ctrl.render import BODY_COLORS, HAND_EDGE_COLORS

    palette = {BLACK, (0, 0, 255), (255, 255, 255), *BODY_COLORS, *HAND_EDGE_COLORS}
    palette |= {tuple(int(channel * 0.6) for channel in color) for color in BODY_COLORS}
    packed = image.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32)
    known = [(r << 16) | (g << 8) | b for r, g, b in palette]
    return int((~np.isin(packed, known)).sum())


def test_detector_map_at_1024_is_sharp_when_drawn_at_the_output_resolution(
    tmp_path, yolox_nano_path, portraits_dir
) -> None:
    from onnx_graphs import pose_like

    from dwpose_ctrl.detector import DWposeDetector

    pose_model = pose_like(tmp_path / "pose.onnx", input_size=(64, 48), dynamic=True, seed=3)
    detector = DWposeDetector(yolox_nano_path, pose_model)
    photo = str(portraits_dir / "grace_hopper.jpg")  # 512 x 600: the map is 1024 x 1216
    upscaled = detector(photo, detect_resolution=256, image_resolution=1024, output_type="np")
    sharp = detector(
        photo, detect_resolution=256, image_resolution=1024, output_type="np", draw_at_output_resolution=True
    )
    assert sharp.shape == upscaled.shape == (1216, 1024, 3)
    assert sharp.any()
    assert off_palette_pixels(sharp) == 0
    assert off_palette_pixels(upscaled) > 10_000
