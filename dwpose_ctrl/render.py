"""OpenPose-style control maps, pixel for pixel as the DWPose ControlNet annotator (SPEC 5).

Order of drawing: all bodies (limbs of every person, the whole canvas times 0.6, then the
joints), then every hand (its edges, then its points), then every face. Everything is drawn
with OpenCV's 8-connected primitives, no anti-aliasing. Extras, off by default: feet (the
OpenPose BODY_25 foot limbs and points), thicker sticks for SDXL ControlNets, and drawing over
the input image instead of a black canvas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dwpose_ctrl.inputs import MAX_PIXELS
from dwpose_ctrl.openpose import OpenPoseFrame, OpenPosePerson, point_present

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

STICK_HALF_WIDTH = 4
JOINT_RADIUS = 4
HAND_LINE_THICKNESS = 2
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3
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
    :func:`stick_half_width`); joints, hands and faces keep their size.
    """

    include_body: bool = True
    include_hand: bool = True
    include_face: bool = True
    include_foot: bool = False
    stick_scaling: bool = False


def stick_half_width(height: int, width: int, stick_scaling: bool) -> int:
    """Limb half-width: 4, times ``min(2 + long_side // 1000, 7)`` with ``stick_scaling`` when the
    long side is >= 500 px (ComfyUI's ``xinsr_stick_scaling`` rule)."""
    if not stick_scaling:
        return STICK_HALF_WIDTH
    long_side = max(height, width)
    factor = 1 if long_side < 500 else min(2 + long_side // 1000, 7)
    return STICK_HALF_WIDTH * factor


def draw_openpose(
    frame: OpenPoseFrame, canvas: np.ndarray | None = None, options: RenderOptions = RenderOptions()
) -> np.ndarray:
    """Draw ``frame`` as an OpenPose control map, RGB uint8 (H, W, 3).

    Without ``canvas`` the map is ``frame.height`` x ``frame.width`` on black. With ``canvas`` (an
    RGB uint8 image of any size, e.g. the input photo) a copy of it is drawn on; as in the
    reference, the body pass multiplies the whole canvas by 0.6, so the photo is dimmed. The
    normalised coordinates are scaled by the size of the canvas drawn on. Which points are drawn
    follows ``frame.visibility_threshold`` (0.3 by default, SPEC 4).
    """
    if not isinstance(frame, OpenPoseFrame):
        raise TypeError(f"frame must be an OpenPoseFrame, got {type(frame).__name__}")
    if not isinstance(options, RenderOptions):
        raise TypeError(f"options must be a RenderOptions, got {type(options).__name__}")
    if canvas is None:
        _check_canvas_size(frame.height, frame.width)
        image = np.zeros((frame.height, frame.width, 3), dtype=np.uint8)
    else:
        image = _copy_canvas(canvas)
    people = frame.people
    threshold = frame.visibility_threshold
    _check_drawable(people, image.shape[0], image.shape[1], options, threshold)
    if options.include_body or options.include_foot:
        image = _draw_bodies(image, people, options, threshold)
    if options.include_hand:
        hands = [person.left_hand for person in people] + [person.right_hand for person in people]
        for hand in hands:
            _draw_hand(image, hand, threshold)
    if options.include_face:
        for person in people:
            _draw_face(image, person.face, threshold)
    return image


def _check_canvas_size(height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise ValueError(
            f"a {width}x{height} map has more than {MAX_PIXELS} pixels (dwpose_ctrl.inputs.MAX_PIXELS); "
            "draw at a smaller size with dataclasses.replace(frame, width=..., height=...)"
        )


def _check_drawable(
    people: list[OpenPosePerson], height: int, width: int, options: RenderOptions, threshold: float
) -> None:
    """Refuse points that would be drawn at pixel coordinates OpenCV cannot take."""
    for index, person in enumerate(people):
        parts = []
        if options.include_body or options.include_foot:
            parts += [
                ("body", person.body, person.body_visible(threshold)),
                ("feet", person.feet, person.feet_visible(threshold)),
            ]
        if options.include_hand:
            parts += [
                ("left_hand", person.left_hand, person.left_hand_present(threshold)),
                ("right_hand", person.right_hand, person.right_hand_present(threshold)),
            ]
        if options.include_face:
            parts.append(("face", person.face, person.face_present(threshold)))
        for name, points, drawn in parts:
            pixels = np.abs(points[drawn, :2]) * (width, height)
            if pixels.size and pixels.max() >= MAX_PIXEL_COORDINATE:
                raise ValueError(
                    f"person {index}: a {name} point lies {pixels.max():.3g} pixels from the origin of a "
                    f"{width}x{height} canvas, beyond what can be drawn ({MAX_PIXEL_COORDINATE}); "
                    "check that the coordinates are normalised by the canvas size"
                )


def _copy_canvas(canvas: np.ndarray) -> np.ndarray:
    if not isinstance(canvas, np.ndarray):
        raise TypeError(f"canvas must be a numpy RGB uint8 array (H, W, 3), got {type(canvas).__name__}")
    if canvas.dtype != np.uint8:
        raise TypeError(f"canvas must be uint8 RGB, got dtype {canvas.dtype}; convert it first")
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.shape[0] == 0 or canvas.shape[1] == 0:
        raise ValueError(f"canvas must have shape (H, W, 3) with H, W > 0, got {canvas.shape}")
    _check_canvas_size(canvas.shape[0], canvas.shape[1])
    return np.array(canvas, dtype=np.uint8, order="C", copy=True)


def _draw_limb(image: np.ndarray, p1: np.ndarray, p2: np.ndarray, half_width: int, color: tuple) -> None:
    """A filled ellipse between two normalised points, with the reference's exact arithmetic."""
    height, width = image.shape[:2]
    x1, x2 = p1[0] * float(width), p2[0] * float(width)
    y1, y2 = p1[1] * float(height), p2[1] * float(height)
    mean_x = (x1 + x2) / 2
    mean_y = (y1 + y2) / 2
    length = ((y1 - y2) ** 2 + (x1 - x2) ** 2) ** 0.5
    angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
    polygon = cv2.ellipse2Poly(
        (int(mean_x), int(mean_y)), (int(length / 2), half_width), int(angle), 0, 360, 1
    )
    cv2.fillConvexPoly(image, polygon, color)


def _draw_bodies(
    image: np.ndarray, people: list[OpenPosePerson], options: RenderOptions, threshold: float
) -> np.ndarray:
    height, width = image.shape[:2]
    half_width = stick_half_width(height, width, options.stick_scaling)
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
                _draw_limb(image, person_points[first], person_points[second], half_width, color)

    image = cv2.LUT(image, _DIMMED)

    for index, color in joints:
        for person_points, person_visible in zip(points, visible, strict=True):
            if person_visible[index]:
                x = int(person_points[index, 0] * width)
                y = int(person_points[index, 1] * height)
                cv2.circle(image, (x, y), JOINT_RADIUS, color, thickness=-1)
    return image


def _pixels_drawn(points: np.ndarray, present: np.ndarray, height: int, width: int) -> list:
    """Pixel position of every point that is drawn (present and past the 1-pixel rule), else None."""
    coordinates = np.where(present[:, None], points[:, :2], 0.0)  # missing points may lie anywhere
    xs = (coordinates[:, 0] * width).astype(np.int64)  # int(x * W): truncation toward zero
    ys = (coordinates[:, 1] * height).astype(np.int64)
    drawn = present & (xs > _ONE_PIXEL) & (ys > _ONE_PIXEL)
    return [(int(x), int(y)) if keep else None for x, y, keep in zip(xs, ys, drawn, strict=True)]


def _draw_hand(image: np.ndarray, hand: np.ndarray, threshold: float) -> None:
    height, width = image.shape[:2]
    present = point_present(hand[:, 2], threshold)
    pixels = _pixels_drawn(hand, present, height, width)
    for (first, second), color in zip(HAND_EDGES, HAND_EDGE_COLORS, strict=True):
        if pixels[first] is not None and pixels[second] is not None:
            cv2.line(image, pixels[first], pixels[second], color, thickness=HAND_LINE_THICKNESS)
    for pixel in pixels:
        if pixel is not None:
            cv2.circle(image, pixel, HAND_POINT_RADIUS, HAND_POINT_COLOR, thickness=-1)


def _draw_face(image: np.ndarray, face: np.ndarray, threshold: float) -> None:
    height, width = image.shape[:2]
    present = point_present(face[:, 2], threshold)
    for pixel in _pixels_drawn(face, present, height, width):
        if pixel is not None:
            cv2.circle(image, pixel, FACE_POINT_RADIUS, FACE_POINT_COLOR, thickness=-1)
