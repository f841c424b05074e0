"""Videos processed as whole clips: estimate every frame, then fill gaps, smooth and retarget, then draw.

The streaming path of :mod:`dwpose_ctrl.engines.item` draws each frame as soon as it is estimated.
Offline smoothing (zero lag), gap filling and retargeting onto a reference need the whole clip, so
with :class:`~dwpose_ctrl.engines.item.SequenceSettings` a video takes two passes: the first
estimates and tracks every frame, keeping only the persons; the sequence is then processed
(:func:`dwpose_ctrl.sequence.smooth_sequence`, :func:`dwpose_ctrl.sequence.fill_gaps`,
:func:`dwpose_ctrl.retarget.retarget_sequence`); the second pass draws and encodes every frame
(decoding the video again only for overlays of an unaligned clip).

Aligned clips are drawn on the reference's canvas: the maps have the size ``--image-resolution``
gives for the reference image (or the canvas of a reference JSON), overlays are drawn over the
reference image, and JSON coordinates are pixels of the reference.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dwpose_ctrl.engines.item import (
    Interrupted,
    ItemError,
    JobSettings,
    VideoPoseTracker,
    batches,
    decode_image,
    encode_json,
    open_frame_encoder,
    open_video_source,
    video_warnings,
)
from dwpose_ctrl.engines.plan import WorkItem
from dwpose_ctrl.engines.pose import PoseEstimator, RenderedOutputs
from dwpose_ctrl.engines.storage import Storage
from dwpose_ctrl.inputs import check_image_size
from dwpose_ctrl.openpose import OpenPoseFrame, persons_to_openpose
from dwpose_ctrl.render import render_map
from dwpose_ctrl.retarget import retarget_sequence
from dwpose_ctrl.sequence import (
    PoseSequence,
    fill_gaps,
    parse_json,
    sequence_from_json,
    sequence_to_json,
    smooth_sequence,
)
from dwpose_ctrl.video import VideoInfo, open_video


@dataclass(frozen=True)
class Reference:
    """The character a clip is aligned to: its pose, the map size, the JSON pixel size, the overlay canvas."""

    pose: OpenPoseFrame
    output_size: tuple[int, int]
    json_size: tuple[int, int]
    image: np.ndarray | None


def load_reference(location: str, storage: Storage, estimator: PoseEstimator, job: JobSettings) -> Reference:
    """The reference of ``--align-to``: an OpenPose JSON file (its first frame) or an image whose
    persons the estimator finds at the job's detection resolution."""
    try:
        data = storage.read_bytes(location)
    except OSError as error:
        raise ItemError(f"cannot read the reference {location}: {error.strerror or error}") from error
    if location.lower().endswith(".json"):
        try:
            sequence = sequence_from_json(parse_json(data, location), estimator.keypoint_threshold)
        except (ValueError, TypeError) as error:
            raise ItemError(f"the reference {location} is not OpenPose JSON: {error}") from error
        if not sequence.frames:
            raise ItemError(f"the reference {location} holds no frame")
        pose = sequence.frames[0].pose
        size = (pose.width, pose.height)
        return Reference(pose, job.render.output_size(pose.height, pose.width), size, None)
    try:
        rgb = decode_image(data, job.max_pixels)
    except ItemError as error:
        raise ItemError(f"the reference {location}: {error}") from error
    detection = job.render.detection_image(rgb)
    persons = estimator.estimate(detection, job.render.detection_scale(rgb, detection))
    height, width = detection.shape[:2]
    pose = persons_to_openpose(persons, width, height, estimator.keypoint_threshold)
    output_size = job.render.output_size(rgb.shape[0], rgb.shape[1])
    return Reference(pose, output_size, (rgb.shape[1], rgb.shape[0]), detection)


@dataclass(frozen=True)
class EstimatedClip:
    """The first pass's result: the poses of every frame, their timestamps, the video's info and
    its warning ("" when none)."""

    sequence: PoseSequence
    timestamps: list[int]
    info: VideoInfo
    warning: str


def estimate_clip(
    item: WorkItem,
    estimator: PoseEstimator,
    job: JobSettings,
    storage: Storage,
    stop: threading.Event | None = None,
    batch_size: int = 1,
) -> EstimatedClip:
    """First pass: persons of every frame with stable IDs, ``batch_size`` frames per network run
    (the same numbers as one at a time); nothing is drawn."""
    tracker = VideoPoseTracker(estimator, job.detect_every, job.smoothing)
    persons_per_frame: list = []
    timestamps: list[int] = []
    canvas, last, resized = None, None, None
    source = open_video_source(item.source.location, storage)
    try:
        with open_video(source, job.max_pixels) as (info, frames):
            check_image_size(info.height, info.width, "video frame")
            for batch in batches(frames, batch_size):
                if stop is not None and stop.is_set():
                    raise Interrupted(f"stopped at frame {batch[0].index} (estimating)")
                images = [job.render.detection_image(frame.image) for frame in batch]
                scales = [job.render.detection_scale(f.image, i) for f, i in zip(batch, images, strict=True)]
                indices, seconds = [f.index for f in batch], [f.seconds for f in batch]
                persons_per_frame += tracker.track(indices, images, seconds, scales)
                timestamps += [frame.pts for frame in batch]
                canvas, last = (images[0].shape[1], images[0].shape[0]), batch[-1]
                changed = [frame for frame in batch if frame.decoded_size is not None]
                if resized is None and changed:
                    resized = (changed[0].index, changed[0].decoded_size)
    finally:
        if not isinstance(source, str):
            source.close()
    if canvas is None:
        raise ItemError("the video has no decodable frame")
    sequence = PoseSequence.from_persons(persons_per_frame, *canvas, estimator.keypoint_threshold)
    warning = video_warnings(info, len(timestamps), last, resized)
    return EstimatedClip(sequence, timestamps, info, warning)


def process_sequence(sequence: PoseSequence, job: JobSettings, reference: Reference | None) -> PoseSequence:
    """Gap filling, offline smoothing and retargeting as ``job.sequence`` asks."""
    settings = job.sequence
    if settings.smooth:
        sequence = smooth_sequence(sequence, radius=settings.smooth_radius, max_gap=settings.fill_gaps)
    elif settings.fill_gaps:
        sequence = fill_gaps(sequence, settings.fill_gaps)
    if reference is not None:
        try:
            sequence = retarget_sequence(sequence, reference.pose, settings.align_method)
        except ValueError as error:
            raise ItemError(f"cannot align to {settings.align_to}: {error}") from error
    return sequence


def render_video_sequence(
    item: WorkItem,
    estimator: PoseEstimator,
    job: JobSettings,
    storage: Storage,
    stop: threading.Event | None = None,
    on_frame: Callable[[], None] | None = None,
    batch_size: int = 1,
) -> tuple[int, str]:
    """Render a video item in two passes (see the module docstring); the frame count and warning.

    The outputs are staged and published together, as in the streaming path."""
    import av

    try:
        return _render_video_sequence(item, estimator, job, storage, stop, on_frame, batch_size)
    except av.FFmpegError as error:
        raise ItemError(f"broken or unsupported video: {error}") from error


def _render_video_sequence(item, estimator, job, storage, stop, on_frame, batch_size) -> tuple[int, str]:
    reference = None
    if job.sequence.align_to is not None:
        reference = load_reference(job.sequence.align_to, storage, estimator, job)
    estimated = estimate_clip(item, estimator, job, storage, stop, batch_size)
    info = estimated.info
    sequence = process_sequence(estimated.sequence, job, reference)
    if reference is None:
        output_size = job.render.output_size(info.height, info.width)
        json_size = (info.width, info.height)
    else:
        output_size, json_size = reference.output_size, reference.json_size
    entries = sequence_to_json(sequence, *json_size)
    options = job.render.render_options
    with contextlib.ExitStack() as staged:
        encoder = open_frame_encoder(item, storage, staged, job, info, output_size, on_frame)
        overlays = None
        if len(encoder.writers) > 1 and reference is None:  # the overlay is drawn over the frames again
            source = open_video_source(item.source.location, storage)
            if not isinstance(source, str):
                staged.callback(source.close)
            frames = staged.enter_context(open_video(source, job.max_pixels))[1]
            overlays = (job.render.detection_image(frame.image) for frame in frames)
        try:
            for index, (frame, entry) in enumerate(zip(sequence.frames, entries, strict=True)):
                if stop is not None and stop.is_set():
                    raise Interrupted(f"stopped at frame {index}")
                overlay = None
                if len(encoder.writers) > 1:
                    canvas = reference.image if reference is not None else next(overlays)
                    overlay = render_map(frame.pose, output_size, options, canvas)
                rendered = RenderedOutputs(render_map(frame.pose, output_size, options), entry, overlay)
                encoder.task(index, estimated.timestamps[index], rendered)()
            encoder.close()
        except BaseException:
            encoder.abort()
            raise
        if item.json is not None:
            storage.write_bytes(item.json, encode_json(entries))
    return len(sequence), estimated.warning
