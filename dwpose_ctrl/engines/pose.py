"""The one inference step the engines run per image or frame, and what is drawn from it.

An engine asks a :class:`PoseEstimator` for the persons of a detection image once, then draws
every output from that single result: the control map, the OpenPose JSON and the overlay
(:func:`render_outputs`). :class:`DetectorEstimator` adapts :class:`~dwpose_ctrl.DWposeDetector`;
tests use small fakes with the same two methods.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dwpose_ctrl.arguments import check_flag, is_integer
from dwpose_ctrl.keypoints import Person
from dwpose_ctrl.openpose import VISIBILITY_THRESHOLD, frame_to_json, persons_to_openpose
from dwpose_ctrl.render import RenderOptions, render_map
from dwpose_ctrl.resize import resize_to_resolution, resolution_size
from dwpose_ctrl.styles import get_style


@dataclass(frozen=True)
class RenderSettings:
    """Resolutions and parts, with the meaning they have for ``DWposeDetector.__call__``.

    ``None`` resolutions mean the input's own size. ``max_pixels`` bounds the detection image
    and the maps (``None``: the current :data:`dwpose_ctrl.inputs.MAX_PIXELS`); an engine's
    :class:`~dwpose_ctrl.engines.item.JobSettings` sets it to its own limit.
    """

    detect_resolution: int | None = 512
    image_resolution: int | None = 512
    include_body: bool = True
    include_hand: bool = True
    include_face: bool = True
    include_foot: bool = False
    stick_scaling: bool = False
    style: str = "annotator"
    draw_at_output_resolution: bool = False
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        """Checked when made, so that a bad setting stops a run before any item."""
        get_style(self.style)  # an unknown style stops the job before any item, naming the choices
        for name in ("detect_resolution", "image_resolution"):
            value = getattr(self, name)
            if value is not None and not (is_integer(value) and value >= 1):
                raise ValueError(f"{name} must be a positive integer or None (input size), got {value!r}")
        switches = ("include_body", "include_hand", "include_face", "include_foot", "stick_scaling")
        for name in (*switches, "draw_at_output_resolution"):
            object.__setattr__(self, name, check_flag(name, getattr(self, name)))

    @property
    def render_options(self) -> RenderOptions:
        return RenderOptions(
            include_body=self.include_body,
            include_hand=self.include_hand,
            include_face=self.include_face,
            include_foot=self.include_foot,
            stick_scaling=self.stick_scaling,
            style=self.style,
            draw_at_output_resolution=self.draw_at_output_resolution,
        )

    def detection_image(self, image: np.ndarray) -> np.ndarray:
        """The image the persons are estimated on (SPEC 1 resize, or the image itself)."""
        if self.detect_resolution is None:
            return image
        return resize_to_resolution(image, self.detect_resolution, self.max_pixels)

    def detection_scale(self, image: np.ndarray, detection_image: np.ndarray) -> float:
        """Detection-image pixels per input pixel (the smaller of the two axes, as the detector uses)."""
        return min(detection_image.shape[0] / image.shape[0], detection_image.shape[1] / image.shape[1])

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the map for an input of that size."""
        if self.image_resolution is None:
            return height, width
        return resolution_size(height, width, self.image_resolution, self.max_pixels)


@runtime_checkable
class PoseEstimator(Protocol):
    """Persons of an RGB uint8 image, in that image's pixels.

    ``keypoint_threshold`` is the score above which a keypoint is drawn and written (0.3 in the
    reference); the engines draw every output of the estimator's persons with it.
    """

    keypoint_threshold: float

    def estimate(self, image: np.ndarray, scale: float = 1.0) -> list[Person]:
        """Detect persons, then estimate their keypoints.

        ``scale`` is the detection image's size over the input's (pixel-size thresholds such as
        ``min_box_size`` are given in input pixels).
        """

    def estimate_boxes(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[Person]:
        """Estimate keypoints inside given person boxes (xyxy, same pixels), one person per box."""


class DetectorEstimator:
    """:class:`PoseEstimator` over a :class:`~dwpose_ctrl.DWposeDetector`."""

    def __init__(self, detector):
        self.detector = detector

    @property
    def keypoint_threshold(self) -> float:
        return self.detector.keypoint_threshold

    def estimate(self, image: np.ndarray, scale: float = 1.0) -> list[Person]:
        min_box_size = self.detector.min_box_size
        if min_box_size is not None:
            min_box_size *= scale
        return self.detector.estimate_array(image, min_box_size).to_persons()

    def estimate_many(self, images: list[np.ndarray], scales: list[float]) -> list[list[Person]]:
        """``estimate`` of each image, batched across them (one YOLOX run and one pose-model run
        when the models' batch is dynamic); the same numbers as one ``estimate`` call per image."""
        min_box_size = self.detector.min_box_size
        min_box_sizes = None if min_box_size is None else [min_box_size * scale for scale in scales]
        return [poses.to_persons() for poses in self.detector.estimate_arrays(images, min_box_sizes)]

    def estimate_boxes(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[Person]:
        return self.detector.estimate_boxes(image, boxes).to_persons()


@dataclass(frozen=True)
class RenderedOutputs:
    """Everything written for one image or frame, drawn from one inference."""

    control_map: np.ndarray
    openpose_json: dict | None
    overlay: np.ndarray | None


def scale_persons(persons: list[Person], scale_x: float, scale_y: float) -> list[Person]:
    """Persons with keypoints and boxes multiplied by (scale_x, scale_y)."""
    factor = np.array([scale_x, scale_y])
    return [
        dataclasses.replace(person, keypoints=person.keypoints * factor, box=person.box * np.tile(factor, 2))
        for person in persons
    ]


def render_outputs(
    image: np.ndarray,
    detection_image: np.ndarray,
    persons: list[Person],
    settings: RenderSettings,
    want_json: bool,
    want_overlay: bool,
    keypoint_threshold: float = VISIBILITY_THRESHOLD,
) -> RenderedOutputs:
    """Control map (and JSON, overlay) of ``persons`` found on ``detection_image``.

    The map is drawn on a black canvas of the detection image's size (or the size the style or
    ``draw_at_output_resolution`` asks for) and resized to the output size, exactly as
    ``DWposeDetector.__call__`` does (keypoints drawn when their score
    passes ``keypoint_threshold``, the detector's option); the overlay is drawn the same way
    over the detection image. JSON coordinates are pixels of the input ``image`` (SPEC 6); persons
    with a ``track_id`` get OpenPose's ``person_id`` field.
    """
    det_height, det_width = detection_image.shape[:2]
    height, width = image.shape[:2]
    out_height, out_width = settings.output_size(height, width)
    frame = persons_to_openpose(persons, det_width, det_height, keypoint_threshold)
    options = settings.render_options
    output_size = (out_height, out_width)
    limit = settings.max_pixels
    control_map = render_map(frame, output_size, options, max_pixels=limit)
    overlay = (
        render_map(frame, output_size, options, detection_image, max_pixels=limit) if want_overlay else None
    )
    openpose_json = None
    if want_json:
        openpose_json = frame_to_json(frame, width, height)
        for entry, person in zip(openpose_json["people"], persons, strict=True):
            if person.track_id is not None:
                entry["person_id"] = [int(person.track_id)]
    return RenderedOutputs(control_map, openpose_json, overlay)
