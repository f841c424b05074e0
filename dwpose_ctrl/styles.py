"""Drawing conventions of pose-guided video models, as a table of :class:`DrawingStyle` rows.

``RenderOptions(style=...)`` picks a row of :data:`STYLES`; :mod:`dwpose_ctrl.render` reads its
fields and has no per-style branches. The facts come from each project's drawing code (read, not
copied):

- ``"annotator"``: the DWPose ControlNet annotator (SPEC 5), the default, pixel for pixel.
- ``"musepose"``: TMElyralab/MusePose ``pose/script/util.py`` (``smart_width``,
  ``draw_bodypose``, ``draw_handpose``) and ``draw_dwpose.py`` (training maps drawn with a
  1024 px short side, then resized with ``INTER_AREA``).
- ``"mimicmotion"``: Tencent/MimicMotion ``mimicmotion/dwpose/util.py`` (``alpha_blend_color``,
  ``draw_pose`` with ``ref_w=2160``, the final ``COLOR_BGR2RGB``) and ``dwpose_detector.py``
  (hand and face points are not hidden below the threshold).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import cv2


@dataclass(frozen=True)
class DrawingStyle:
    """How one model family draws an OpenPose map.

    ``width_steps``: ``None`` keeps the annotator's fixed widths (limb half-width 4, hand lines
    2 px); a tuple ties widths to lengths in pixels: a body limb's ellipse half-width and a hand
    edge's line thickness are ``1 + (number of steps <= length)``. ``confidence_colors``
    multiplies every colour by the score (limbs: the product of both ends' scores; hand edges:
    ``int(s1 * s2 * 255)`` times the HSV colour in [0, 1]; points: ``int(score * 255)`` for hand
    and face points, ``int(c * score)`` per channel for joints). ``hands_and_faces_at_any_score``
    draws hand and face points whatever their score (else they follow the visibility threshold).
    ``swap_red_blue`` reverses every colour (a map drawn as BGR then converted to RGB).
    ``canvas_short_side`` draws on a canvas whose short side is that many pixels (the output's
    aspect, each side ``int(side * k // canvas_multiple * canvas_multiple)``) and resizes the
    result to the output size with ``resize_interpolation``; ``None`` draws on the detection
    image, as the annotator does.
    """

    name: str
    source: str
    width_steps: tuple[float, ...] | None = None
    joint_radius: int = 4
    hand_line_thickness: int = 2
    hand_point_radius: int = 4
    face_point_radius: int = 3
    confidence_colors: bool = False
    hands_and_faces_at_any_score: bool = False
    swap_red_blue: bool = False
    canvas_short_side: int | None = None
    canvas_multiple: int = 1
    resize_interpolation: int = cv2.INTER_LINEAR

    def width_for_length(self, length: float) -> int:
        """Limb half-width or hand line thickness for a segment ``length`` pixels long."""
        if self.width_steps is None:
            raise ValueError(f"style {self.name!r} has fixed widths, not widths tied to length")
        return 1 + bisect.bisect_right(self.width_steps, length)

    def canvas_size(self, height: int, width: int) -> tuple[int, int] | None:
        """(height, width) of the canvas this style draws an ``height`` x ``width`` map on, or
        ``None`` when it draws on the detection image."""
        if self.canvas_short_side is None:
            return None
        k = float(self.canvas_short_side) / min(height, width)
        step = self.canvas_multiple
        return int(height * k // step * step), int(width * k // step * step)


STYLES: dict[str, DrawingStyle] = {
    style.name: style
    for style in (
        DrawingStyle(name="annotator", source="IDEA-Research/DWPose ControlNet annotator (SPEC 5)"),
        DrawingStyle(
            name="musepose",
            source="TMElyralab/MusePose pose/script/util.py, draw_dwpose.py",
            width_steps=(5, 10, 20, 40, 80, 160, 320),
            hand_point_radius=3,
            canvas_short_side=1024,
            canvas_multiple=2,
            resize_interpolation=cv2.INTER_AREA,
        ),
        DrawingStyle(
            name="mimicmotion",
            source="Tencent/MimicMotion mimicmotion/dwpose/util.py, dwpose_detector.py",
            confidence_colors=True,
            hands_and_faces_at_any_score=True,
            swap_red_blue=True,
            canvas_short_side=2160,
        ),
    )
}
STYLE_NAMES = tuple(STYLES)


def get_style(name: str) -> DrawingStyle:
    """The :class:`DrawingStyle` called ``name``; a clear error for unknown names."""
    try:
        return STYLES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown drawing style {name!r}; choose one of {', '.join(STYLE_NAMES)}") from None
