"""OpenPose-style control maps, pixel for pixel as the DWPose ControlNet annotator (SPEC 5).

Order of drawing: all bodies (limbs of every person, the whole canvas times 0.6, then the
joints), then every hand (its edges, then its points), then every face. Everything is drawn
with OpenCV's 8-connected primitives, no anti-aliasing. Extras, off by default: feet (the
OpenPose BODY_25 foot limbs and points), thicker sticks for SDXL ControlNets, drawing over
the input image instead of a black canvas, the drawing conventions of video models
(:mod:`dwpose_ctrl.styles`) and drawing at the output size (:func:`render_map`).
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from dwpose_ctrl.arguments import check_flag
from dwpose_ctrl.inputs import pixel_limit
from dwpose_ctrl.openpose import OpenPoseFrame, OpenPosePerson, point_present
from dwpose_ctrl.styles import STYLE_NAMES, DrawingStyle, get_style

# Body limbs as pairs of OpenPose-18 indices; the first point of each pair is p1 (SPEC 5).
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# RGB colour of body limb i and of body joint i.
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# Hand edges: five chains from the wrist (0).
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip

# HSV(e / 20, 1, 1) * 255 as OpenCV rounds it, RGB.
HAND_EDGE_COLORS = (
    (255, 0, 0), (255, 77, 0), (255, 153, 0), (255, 229, 0), (204, 255, 0), (128, 255, 0),
    (51, 255, 0), (0, 255, 25), (0, 255, 102), (0, 255, 179), (0, 255, 255), (0, 178, 255),
    (0, 102, 255), (0, 25, 255), (51, 0, 255), (128, 0, 255), (204, 0, 255), (255, 0, 230),
    (255, 0, 153), (255, 0, 77),
)  # fmt: skip

# HSV(e / 20, 1, 1) in [0, 1], the unrounded colours that confidence-scaled styles multiply.
HAND_EDGE_HSV = tuple(colorsys.hsv_to_rgb(edge / 20, 1.0, 1.0) for edge in range(20))

HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)

# Feet, indices into the 24 points body (0-17) + feet (18-23, COCO-WholeBody foot order):
# per side ankle - big toe, big toe - small toe, ankle - heel, as OpenPose BODY_25 draws them.
FOOT_LIMBS = ((13, 18), (18, 19), (13, 20), (10, 21), (21, 22), (10, 23))
# BODY_25 colours: left foot blue like its left ankle, right foot cyan like its right ankle.
LEFT_FOOT_COLOR = (0, 0, 255)
RIGHT_FOOT_COLOR = (0, 255, 255)
FOOT_LIMB_COLORS = (LEFT_FOOT_COLOR,) * 3 + (RIGHT_FOOT_COLOR,) * 3
FOOT_POINT_COLORS = (LEFT_FOOT_COLOR,) * 3 + (RIGHT_FOOT_COLOR,) * 3

STICK_HALF_WIDTH = 4  # radii and line widths per style: dwpose_ctrl.styles.DrawingStyle
LIMB_DIMMING = 0.6
# uint8 value v -> int(v * 0.6), the reference's float64 multiply and truncation, as a lookup table.
_DIMMED = (np.arange(256, dtype=np.float64) * LIMB_DIMMING).astype(np.uint8)
# OpenCV takes int32 pixel coordinates; farther points are refused with a clear error.
MAX_PIXEL_COORDINATE = 2**30
_ONE_PIXEL = 0.01  # hand/face points are drawn when int(x * W) > 0.01 and int(y * H) > 0.01


@dataclass(frozen=True)
class RenderOptions:
    """What to draw.

    ``include_foot`` adds the BODY_25 foot limbs and points (never drawn by the reference).
    ``stick_scaling`` thickens body and foot limbs for SDXL ControlNets (see
    :func:`stick_half_width`); joints, hands and faces keep their size. ``style`` names a row of
    :data:`dwpose_ctrl.styles.STYLES` (``"annotator"``, ``"musepose"``, ``"mimicmotion"``).
    ``draw_at_output_resolution`` makes :func:`render_map` draw on a canvas of the output size
    instead of the detection image (or the style's own canvas), so large maps stay sharp.
    """

    include_body: bool = True
    include_hand: bool = True
    include_face: bool = True
    include_foot: bool = False
    stick_scaling: bool = False
    style: str = "annotator"
    draw_at_output_resolution: bool = False

    def __post_init__(self) -> None:
        if self.style not in STYLE_NAMES:
            raise ValueError(
                f"RenderOptions.style must be one of {', '.join(STYLE_NAMES)}, got {self.style!r}"
            )
        switches = ("include_body", "include_hand", "include_face", "include_foot", "stick_scaling")
        for name in (*switches, "draw_at_output_resolution"):
            check_flag(f"RenderOptions.{name}", getattr(self, name))  # "no" is not False

    @property
    def drawing_style(self) -> DrawingStyle:
        """The :class:`~dwpose_ctrl.styles.DrawingStyle` row named by ``style``."""
        return get_style(self.style)


def stick_half_width(height: int, width: int, stick_scaling: bool) -> int:
    """Limb half-width: 4, times ``min(2 + long_side // 1000, 7)`` with ``stick_scaling`` when the
    long side is >= 500 px (ComfyUI's ``xinsr_stick_scaling`` rule)."""
    if not stick_scaling:
        return STICK_HALF_WIDTH
    long_side = max(height, width)
    factor = 1 if long_side < 500 else min(2 + long_side // 1000, 7)
    return STICK_HALF_WIDTH * factor


def draw_openpose(
    frame: OpenPoseFrame,
    canvas: np.ndarray | None = None,
    options: RenderOptions = RenderOptions(),
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Draw ``frame`` as an OpenPose control map, RGB uint8 (H, W, 3).

    Without ``canvas`` the map is ``frame.height`` x ``frame.width`` on black. With ``canvas`` (an
    RGB uint8 image of any size, e.g. the input photo) a copy of it is drawn on; as in the
    reference, the body pass multiplies the whole canvas by 0.6, so the photo is dimmed. The
    normalised coordinates are scaled by the size of the canvas drawn on. Which points are drawn
    follows ``frame.visibility_threshold`` (0.3 by default, SPEC 4). The primitives follow
    ``options.style`` on the canvas given; :func:`render_map` also picks the canvas size a
    style draws on and resizes to the output. Maps larger than
    ``max_pixels`` (default: the current :data:`dwpose_ctrl.inputs.MAX_PIXELS`) are refused.
    """
    if not isinstance(frame, OpenPoseFrame):
        raise TypeError(f"frame must be an OpenPoseFrame, got {type(frame).__name__}")
    if not isinstance(options, RenderOptions):
        raise TypeError(f"options must be a RenderOptions, got {type(options).__name__}")
    if canvas is None:
        _check_canvas_size(frame.height, frame.width, max_pixels)
        image = np.zeros((frame.height, frame.width, 3), dtype=np.uint8)
    else:
        image = _copy_canvas(canvas, max_pixels)
    people = frame.people
    threshold = frame.visibility_threshold
    style = options.drawing_style
    _check_drawable(people, image.shape[0], image.shape[1], options, threshold)
    if options.include_body or options.include_foot:
        image = _draw_bodies(image, people, options, threshold)
    if options.include_hand:
        hands = [person.left_hand for person in people] + [person.right_hand for person in people]
        for hand in hands:
            _draw_hand(image, hand, threshold, style)
    if options.include_face:
        for person in people:
            _draw_face(image, person.face, threshold, style)
    return image


def render_map(
    frame: OpenPoseFrame,
    output_size: tuple[int, int] | None = None,
    options: RenderOptions = RenderOptions(),
    background: np.ndarray | None = None,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """The control map of ``frame`` at ``output_size`` (height, width; default the frame's size).

    The canvas drawn on is the frame's own size (the detection image, for the detector's frames:
    the annotator's way), the style's own canvas (MusePose: short side 1024, MimicMotion: 2160),
    or, with ``options.draw_at_output_resolution``, the output size; the drawing is then resized
    to ``output_size`` (linear, or the style's interpolation from its own canvas). ``background``
    (an overlay photo, RGB uint8) is resized (linear) to the canvas when its size differs.
    Canvases and maps larger than ``max_pixels`` (default: the current
    :data:`dwpose_ctrl.inputs.MAX_PIXELS`) are refused.
    """
    if not isinstance(options, RenderOptions):
        raise TypeError(f"options must be a RenderOptions, got {type(options).__name__}")
    if output_size is None:
        output_size = (frame.height, frame.width)
    if (
        not isinstance(output_size, (tuple, list))
        or len(output_size) != 2
        or not all(isinstance(side, (int, np.integer)) and not isinstance(side, bool) for side in output_size)
        or min(output_size) < 1
    ):
        raise ValueError(f"output_size must be (height, width) in whole pixels > 0, got {output_size!r}")
    out_height, out_width = int(output_size[0]), int(output_size[1])
    _check_canvas_size(out_height, out_width, max_pixels)
    interpolation = cv2.INTER_LINEAR
    canvas_size: tuple[int, int] | None
    if options.draw_at_output_resolution:
        canvas_size = (out_height, out_width)
    else:
        style = options.drawing_style
        canvas_size = style.canvas_size(out_height, out_width)
        if canvas_size is not None:
            interpolation = style.resize_interpolation
    if background is not None:
        background = _copy_canvas(background, max_pixels)
        if canvas_size is not None and background.shape[:2] != canvas_size:
            background = cv2.resize(
                background, (canvas_size[1], canvas_size[0]), interpolation=cv2.INTER_LINEAR
            )
    elif canvas_size is not None:
        frame = dataclasses.replace(frame, height=canvas_size[0], width=canvas_size[1])
    drawn = draw_openpose(frame, background, options, max_pixels=max_pixels)
    if drawn.shape[:2] == (out_height, out_width):
        return drawn
    return cv2.resize(drawn, (out_width, out_height), interpolation=interpolation)


def _check_canvas_size(height: int, width: int, max_pixels: int | None = None) -> None:
    limit = pixel_limit(max_pixels)
    if height * width > limit:
        raise ValueError(
            f"a {width}x{height} map has more than {limit} pixels (dwpose_ctrl.inputs.MAX_PIXELS); "
            "draw at a smaller size with dataclasses.replace(frame, width=..., height=...)"
        )


def _hand_face_present(points: np.ndarray, threshold: float, style: DrawingStyle) -> np.ndarray:
    """Hand/face points that are not missing: score >= threshold, or all of them for styles that
    draw every point with a score-scaled colour."""
    if style.hands_and_faces_at_any_score:
        return np.ones(len(points), dtype=bool)
    return point_present(points[:, 2], threshold)


def _check_drawable(
    people: list[OpenPosePerson], height: int, width: int, options: RenderOptions, threshold: float
) -> None:
    """Refuse points that would be drawn at pixel coordinates OpenCV cannot take."""
    style = options.drawing_style
    for index, person in enumerate(people):
        parts = []
        if options.include_body or options.include_foot:
            parts += [
                ("body", person.body, person.body_visible(threshold)),
                ("feet", person.feet, person.feet_visible(threshold)),
            ]
        if options.include_hand:
            parts += [
                ("left_hand", person.left_hand, _hand_face_present(person.left_hand, threshold, style)),
                ("right_hand", person.right_hand, _hand_face_present(person.right_hand, threshold, style)),
            ]
        if options.include_face:
            parts.append(("face", person.face, _hand_face_present(person.face, threshold, style)))
        for name, points, drawn in parts:
            pixels = np.abs(points[drawn, :2]) * (width, height)
            if pixels.size and pixels.max() >= MAX_PIXEL_COORDINATE:
                raise ValueError(
                    f"person {index}: a {name} point lies {pixels.max():.3g} pixels from the origin of a "
                    f"{width}x{height} canvas, beyond what can be drawn ({MAX_PIXEL_COORDINATE}); "
                    "check that the coordinates are normalised by the canvas size"
                )


def _copy_canvas(canvas: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    if not isinstance(canvas, np.ndarray):
        raise TypeError(f"canvas must be a numpy RGB uint8 array (H, W, 3), got {type(canvas).__name__}")
    if canvas.dtype != np.uint8:
        raise TypeError(f"canvas must be uint8 RGB, got dtype {canvas.dtype}; convert it first")
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.shape[0] == 0 or canvas.shape[1] == 0:
        raise ValueError(f"canvas must have shape (H, W, 3) with H, W > 0, got {canvas.shape}")
    _check_canvas_size(canvas.shape[0], canvas.shape[1], max_pixels)
    return np.array(canvas, dtype=np.uint8, order="C", copy=True)


def _swapped(color: tuple, style: DrawingStyle) -> tuple:
    """``color`` with red and blue exchanged for styles drawn as BGR and converted to RGB."""
    return color[::-1] if style.swap_red_blue else color


def _styled(color: tuple, style: DrawingStyle, confidence: float) -> tuple:
    """``color`` as ``style`` draws it: times ``confidence`` (truncated per channel), channels swapped."""
    if style.confidence_colors:
        color = tuple(int(channel * confidence) for channel in color)
    return _swapped(color, style)


def _draw_limb(
    image: np.ndarray, p1: np.ndarray, p2: np.ndarray, stick_factor: int, style: DrawingStyle, color: tuple
) -> None:
    """A filled ellipse between two normalised points, with the reference's exact arithmetic.

    Half-width: 4 (or the style's width for the limb's length in canvas pixels) times
    ``stick_factor``; colour as the style draws it for the two ends' scores."""
    height, width = image.shape[:2]
    x1, x2 = p1[0] * float(width), p2[0] * float(width)
    y1, y2 = p1[1] * float(height), p2[1] * float(height)
    mean_x = (x1 + x2) / 2
    mean_y = (y1 + y2) / 2
    length = ((y1 - y2) ** 2 + (x1 - x2) ** 2) ** 0.5
    angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
    half_width = STICK_HALF_WIDTH if style.width_steps is None else style.width_for_length(length)
    polygon = cv2.ellipse2Poly(
        (int(mean_x), int(mean_y)), (int(length / 2), half_width * stick_factor), int(angle), 0, 360, 1
    )
    cv2.fillConvexPoly(image, polygon, _styled(color, style, p1[2] * p2[2]))


def _draw_bodies(
    image: np.ndarray, people: list[OpenPosePerson], options: RenderOptions, threshold: float
) -> np.ndarray:
    height, width = image.shape[:2]
    style = options.drawing_style
    stick_factor = stick_half_width(height, width, options.stick_scaling) // STICK_HALF_WIDTH
    points = [np.concatenate((person.body, person.feet)) for person in people]
    visible = [
        np.concatenate((person.body_visible(threshold), person.feet_visible(threshold))) for person in people
    ]

    limbs: list[tuple[tuple[int, int], tuple]] = []
    joints: list[tuple[int, tuple]] = []
    if options.include_body:
        limbs += list(zip(BODY_LIMBS, BODY_COLORS, strict=False))
        joints += list(enumerate(BODY_COLORS))
    if options.include_foot:
        limbs += list(zip(FOOT_LIMBS, FOOT_LIMB_COLORS, strict=True))
        joints += [(18 + index, color) for index, color in enumerate(FOOT_POINT_COLORS)]

    for (first, second), color in limbs:
        for person_points, person_visible in zip(points, visible, strict=True):
            if person_visible[first] and person_visible[second]:
                _draw_limb(image, person_points[first], person_points[second], stick_factor, style, color)

    image = cv2.LUT(image, _DIMMED)

    for index, color in joints:
        for person_points, person_visible in zip(points, visible, strict=True):
            if person_visible[index]:
                x = int(person_points[index, 0] * width)
                y = int(person_points[index, 1] * height)
                joint_color = _styled(color, style, person_points[index, 2])
                cv2.circle(image, (x, y), style.joint_radius, joint_color, thickness=-1)
    return image


def _pixels_drawn(points: np.ndarray, present: np.ndarray, height: int, width: int) -> list:
    """Pixel position of every point that is drawn (present and past the 1-pixel rule), else None."""
    coordinates = np.where(present[:, None], points[:, :2], 0.0)  # missing points may lie anywhere
    xs = (coordinates[:, 0] * width).astype(np.int64)  # int(x * W): truncation toward zero
    ys = (coordinates[:, 1] * height).astype(np.int64)
    drawn = present & (xs > _ONE_PIXEL) & (ys > _ONE_PIXEL)
    return [(int(x), int(y)) if keep else None for x, y, keep in zip(xs, ys, drawn, strict=True)]


def _hand_edge_style(
    edge: int,
    first: tuple[int, int],
    second: tuple[int, int],
    scores: tuple[float, float],
    style: DrawingStyle,
) -> tuple[tuple, int]:
    """Colour and line thickness of hand edge ``edge`` between two drawn pixels."""
    if style.confidence_colors:
        brightness = int(scores[0] * scores[1] * 255)
        color: tuple = tuple(channel * brightness for channel in HAND_EDGE_HSV[edge])
    else:
        color = HAND_EDGE_COLORS[edge]
    if style.width_steps is None:
        thickness = style.hand_line_thickness
    else:
        length = ((first[0] - second[0]) ** 2 + (first[1] - second[1]) ** 2) ** 0.5
        thickness = style.width_for_length(length)
    return _swapped(color, style), thickness


def _draw_hand(image: np.ndarray, hand: np.ndarray, threshold: float, style: DrawingStyle) -> None:
    height, width = image.shape[:2]
    pixels = _pixels_drawn(hand, _hand_face_present(hand, threshold, style), height, width)
    for edge, (first, second) in enumerate(HAND_EDGES):
        if pixels[first] is not None and pixels[second] is not None:
            color, thickness = _hand_edge_style(
                edge, pixels[first], pixels[second], (hand[first, 2], hand[second, 2]), style
            )
            cv2.line(image, pixels[first], pixels[second], color, thickness=thickness)
    for pixel, score in zip(pixels, hand[:, 2], strict=True):
        if pixel is not None:
            color = _styled(HAND_POINT_COLOR, style, score)
            cv2.circle(image, pixel, style.hand_point_radius, color, thickness=-1)


def _draw_face(image: np.ndarray, face: np.ndarray, threshold: float, style: DrawingStyle) -> None:
    height, width = image.shape[:2]
    pixels = _pixels_drawn(face, _hand_face_present(face, threshold, style), height, width)
    for pixel, score in zip(pixels, face[:, 2], strict=True):
        if pixel is not None:
            color = _styled(FACE_POINT_COLOR, style, score)
            cv2.circle(image, pixel, style.face_point_radius, color, thickness=-1)
