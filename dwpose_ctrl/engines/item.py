"""The per-item work shared by every engine: read, estimate once, draw, write atomically.

:func:`process_item` does one whole item (an image or a video) and never raises for bad input:
it returns an :class:`~dwpose_ctrl.engines.report.ItemResult` with the reason. An image goes
through three stages, which the local engine runs in different threads to overlap them across
items: :func:`read_image` (read, decode, resize for detection), the estimator (inference only)
and :func:`finish_image` (draw the map, JSON and overlay, encode, write).

Write order per item: JSON, overlay, metadata photo copy, per-frame files, then the map last, each
file atomically (an image's files are all encoded first; a video's per-frame files are staged in a
hidden folder and published whole with its videos). An item is done when all its required outputs exist
(:func:`~dwpose_ctrl.engines.plan.is_done`), so a killed run never leaves an item that looks done
but is not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import numbers
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dwpose_ctrl.arguments import check_positive_int, is_integer
from dwpose_ctrl.engines.pipeline import BackgroundWorker, prefetch
from dwpose_ctrl.engines.plan import VIDEO_CODECS, OutputOptions, WorkItem, frame_name
from dwpose_ctrl.engines.pose import PoseEstimator, RenderedOutputs, RenderSettings, render_outputs
from dwpose_ctrl.engines.report import DONE, FAILED, INTERRUPTED, ItemResult, describe_error
from dwpose_ctrl.engines.storage import NotRegularFileError, Storage, is_url
from dwpose_ctrl.heif import HEIF_MISSING, enable_heif, looks_like_heif
from dwpose_ctrl.inputs import MAX_PIXELS, allow_in_pillow, check_image_size, to_rgb
from dwpose_ctrl.keypoints import Person
from dwpose_ctrl.video import (
    BoxTracker,
    KeypointSmoother,
    VideoWriter,
    boxes_from_persons,
    missing_frames,
    open_video,
)


class ItemError(ValueError):
    """A bad input, with a reason meant for the user."""


class Interrupted(Exception):
    """The run was asked to stop while this item was in progress."""


@dataclass(frozen=True)
class Smoothing:
    """One-Euro filter settings for video keypoints (see :class:`dwpose_ctrl.video.OneEuroFilter`).

    Checked when made, so that bad values stop a run before any item rather than fail every video.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    derivative_cutoff: float = 1.0

    def __post_init__(self) -> None:
        values = (self.min_cutoff, self.beta, self.derivative_cutoff)
        finite = all(
            isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            for value in values
        )
        if not finite or self.min_cutoff <= 0 or self.derivative_cutoff <= 0 or self.beta < 0:
            raise ValueError(
                f"smoothing needs finite min_cutoff > 0 (--smooth-min-cutoff, got {self.min_cutoff}), "
                f"beta >= 0 (--smooth-beta, got {self.beta}) and derivative_cutoff > 0 "
                f"(got {self.derivative_cutoff})"
            )


@dataclass(frozen=True)
class SequenceSettings:
    """Whole-clip processing of videos (two passes, see :mod:`dwpose_ctrl.engines.sequence_video`).

    ``smooth``: offline zero-phase smoothing (:func:`dwpose_ctrl.sequence.smooth_track`, window of
    ``smooth_radius`` frames each side); ``fill_gaps``: fill keypoints missing for at most that
    many frames; ``align_to``: a reference image or OpenPose JSON location to retarget onto with
    ``align_method`` (:func:`dwpose_ctrl.retarget.retarget_sequence`).
    """

    smooth: bool = False
    smooth_radius: int = 4
    fill_gaps: int = 0
    align_to: str | None = None
    align_method: str = "segments"

    def __post_init__(self) -> None:
        from dwpose_ctrl.retarget import METHODS

        if self.align_method not in METHODS:
            raise ValueError(f"unknown align method {self.align_method!r}; expected one of {METHODS}")
        if self.smooth_radius < 1 or self.fill_gaps < 0:
            raise ValueError("smooth_radius must be >= 1 and fill_gaps >= 0")


@dataclass(frozen=True)
class JobSettings:
    """Everything an engine needs besides the items and the detector; picklable for Ray."""

    render: RenderSettings = field(default_factory=RenderSettings)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    max_pixels: int = MAX_PIXELS
    detect_every: int = 1
    smoothing: Smoothing | None = None
    video_prefetch: int = 8
    sequence: SequenceSettings | None = None

    def __post_init__(self) -> None:
        """Checked when made: counts are integers of any integer type (numpy's too), never floats."""
        for name, kind in (("render", RenderSettings), ("outputs", OutputOptions), ("smoothing", Smoothing)):
            value = getattr(self, name)
            if not isinstance(value, kind) and not (name == "smoothing" and value is None):
                raise TypeError(f"{name} must be of type {kind.__name__}, got {value!r}")
        object.__setattr__(self, "detect_every", check_positive_int("detect_every", self.detect_every))
        object.__setattr__(self, "max_pixels", check_positive_int("max_pixels", self.max_pixels))
        if not is_integer(self.video_prefetch) or self.video_prefetch < 0:
            raise ValueError(f"video_prefetch must be an integer >= 0, got {self.video_prefetch!r}")
        object.__setattr__(self, "video_prefetch", int(self.video_prefetch))
        if self.render.max_pixels != self.max_pixels:  # one limit for inputs, resizes and maps
            object.__setattr__(self, "render", dataclasses.replace(self.render, max_pixels=self.max_pixels))


# images -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedImage:
    """A decoded image (RGB uint8), its detection image and scale, and the file's bytes."""

    rgb: np.ndarray
    detection_image: np.ndarray
    scale: float
    data: bytes


#: Most file bytes per pixel of the header's size that an image file may hold (16: float32 RGBA),
#: plus :data:`IMAGE_FILE_SLACK` bytes for metadata (EXIF, ICC profiles, embedded previews).
IMAGE_BYTES_PER_PIXEL = 16
IMAGE_FILE_SLACK = 64 * 1024 * 1024


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ItemError(
            f"decompression bomb: the header says {width}x{height} = {width * height} pixels, more "
            f"than --max-pixels {max_pixels}; raise the limit only for files you trust"
        )


def _prepare_pillow(head: bytes, max_pixels: int) -> None:
    """Before Pillow parses a file: let it open images up to our limit (ours decides), and
    register the HEIF plugin for a HEIF file (:class:`ItemError` when it is not installed)."""
    allow_in_pillow(max_pixels)
    if looks_like_heif(head) and not enable_heif():
        raise ItemError(HEIF_MISSING)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image file bytes to RGB uint8 with EXIF orientation applied; :class:`ItemError` if bad."""
    if not data:
        raise ItemError("empty file (0 bytes)")
    _prepare_pillow(data, max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            _check_pixels(width, height, max_pixels)
            check_image_size(height, width, "image", max_pixels)
            image = ImageOps.exif_transpose(opened)
            image.load()
            return to_rgb(image, max_pixels)
    except Image.DecompressionBombError as error:
        raise ItemError(f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise ItemError("not an image (no image format recognises its content)") from error
    except (OSError, SyntaxError) as error:
        raise ItemError(f"corrupt or truncated image: {error}") from error


def read_image_file(handle: BinaryIO, max_pixels: int = MAX_PIXELS) -> bytes:
    """The bytes of an image file, read only after its header passed the pixel limit.

    The header is parsed from the open file first (Pillow reads only what it needs), so a file
    that is no image or claims too many pixels costs a few kilobytes, and at most
    ``width * height * IMAGE_BYTES_PER_PIXEL + IMAGE_FILE_SLACK`` bytes are ever read.
    """
    size = handle.seek(0, io.SEEK_END)
    if size == 0:
        raise ItemError("empty file (0 bytes)")
    handle.seek(0)
    _prepare_pillow(handle.read(16), max_pixels)
    handle.seek(0)
    try:
        with Image.open(handle) as opened:
            width, height = opened.size
    except Image.DecompressionBombError as error:
        raise ItemError(f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise ItemError("not an image (no image format recognises its content)") from error
    except (OSError, SyntaxError, ValueError, struct.error) as error:
        raise ItemError(f"corrupt or truncated image: {error}") from error
    _check_pixels(width, height, max_pixels)
    limit = width * height * IMAGE_BYTES_PER_PIXEL + IMAGE_FILE_SLACK
    if size <= limit:
        handle.seek(0)
        data = handle.read(limit + 1)
        if len(data) <= limit:
            return data
    raise ItemError(
        f"the file holds more than {limit} bytes, more than a {width}x{height} image needs "
        f"({IMAGE_BYTES_PER_PIXEL} bytes per pixel + {IMAGE_FILE_SLACK >> 20} MiB); not read"
    )


def read_image(item: WorkItem, storage: Storage, job: JobSettings) -> LoadedImage:
    """Read (regular files only, header first, bytes capped), decode and resize one image item."""
    try:
        with storage.open_input(item.source.location) as handle:
            data = read_image_file(handle, job.max_pixels)
    except IsADirectoryError as error:
        raise ItemError("is a folder, not a file") from error
    except NotRegularFileError as error:
        raise ItemError(error.strerror) from error
    except PermissionError as error:
        raise ItemError(f"unreadable: permission denied ({error.strerror or error})") from error
    except OSError as error:
        raise ItemError(f"unreadable: {error.strerror or error}") from error
    rgb = decode_image(data, job.max_pixels)
    detection_image = job.render.detection_image(rgb)
    return LoadedImage(rgb, detection_image, job.render.detection_scale(rgb, detection_image), data)


def estimate_image(loaded: LoadedImage, estimator: PoseEstimator) -> list[Person]:
    """The one inference of an image: its persons, in detection-image pixels."""
    return estimator.estimate(loaded.detection_image, loaded.scale)


def estimate_images(
    estimator: PoseEstimator, images: list[np.ndarray], scales: list[float]
) -> list[list[Person] | Exception]:
    """Persons of each detection image, in one batched ``estimate_many`` call when the estimator
    has it (the same numbers as one ``estimate`` call per image).

    When the batched call fails, each image is estimated alone, so that only a bad one fails: its
    entry is then the exception it raised.
    """
    if len(images) > 1 and callable(getattr(estimator, "estimate_many", None)):
        try:
            return list(estimator.estimate_many(images, scales))
        except Exception:
            pass
    results: list[list[Person] | Exception] = []
    for image, scale in zip(images, scales, strict=True):
        try:
            results.append(estimator.estimate(image, scale))
        except Exception as error:
            results.append(error)
    return results


#: zlib level 1 with run-length matching: on control maps (mostly black) and overlays (photos) it is
#: both faster and smaller than OpenCV's default level; lossless either way.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (deterministic)."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]), PNG_PARAMS)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as PNG")
    return encoded.tobytes()


def encode_json(data: dict | list) -> bytes:
    """Compact, deterministic JSON bytes (unrounded floats, as SPEC 6 asks)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def finish_image(
    item: WorkItem,
    loaded: LoadedImage,
    persons: list[Person],
    storage: Storage,
    job: JobSettings,
    keypoint_threshold: float,
) -> None:
    """Draw an image item's outputs from its persons and write them, the map last."""
    options = job.outputs
    rendered = render_outputs(
        loaded.rgb,
        loaded.detection_image,
        persons,
        job.render,
        options.json,
        options.overlay,
        keypoint_threshold,
    )
    write_image_outputs(item, rendered, loaded.data, storage)


def write_image_outputs(item: WorkItem, rendered: RenderedOutputs, data: bytes, storage: Storage) -> None:
    """Encode all of an image item's outputs, then write them, the map last (an encoding error
    leaves none of them half-updated)."""
    files = []
    if item.json is not None:
        files.append((item.json, encode_json(rendered.openpose_json)))
    if item.overlay is not None:
        files.append((item.overlay, encode_png(rendered.overlay)))
    if item.photo_copy is not None:
        files.append((item.photo_copy, data))
    files.append((item.final, encode_png(rendered.control_map)))
    for location, content in files:
        storage.write_bytes(location, content)


# videos -----------------------------------------------------------------------------------------
class VideoPoseTracker:
    """Persons per frame with stable IDs: detection every N frames, keypoint boxes in between."""

    def __init__(self, estimator: PoseEstimator, detect_every: int = 1, smoothing: Smoothing | None = None):
        self.estimator = estimator
        self.detect_every = detect_every
        self.tracker = BoxTracker()
        self.smoother = (
            None
            if smoothing is None
            else KeypointSmoother(smoothing.min_cutoff, smoothing.beta, smoothing.derivative_cutoff)
        )
        self._previous: list = []

    def __call__(self, index: int, detection_image: np.ndarray, seconds: float, scale: float = 1.0) -> list:
        """Persons of frame ``index`` (``scale``: detection-image pixels per input pixel)."""
        return self.track([index], [detection_image], [seconds], [scale])[0]

    def track(
        self, indices: list[int], images: list[np.ndarray], seconds: list[float], scales: list[float]
    ) -> list[list[Person]]:
        """Persons of consecutive frames, in order; the same as calling the tracker on each in turn.

        The frames that detect persons (every ``detect_every``-th) are estimated in one batched
        call; the frames between them follow the previous frame's keypoints, so they run one by one.
        Tracking and smoothing see the frames in order.
        """
        detecting = [position for position, index in enumerate(indices) if index % self.detect_every == 0]
        found = estimate_images(
            self.estimator, [images[i] for i in detecting], [scales[i] for i in detecting]
        )
        detected = dict(zip(detecting, found, strict=True))
        results = []
        for position, detection_image in enumerate(images):
            if position in detected:
                persons = detected[position]
                if isinstance(persons, Exception):
                    raise persons
                persons = self.tracker.update(persons)
            else:
                boxes = boxes_from_persons(self._previous)
                persons = [
                    dataclasses.replace(person, box_score=previous.box_score, track_id=previous.track_id)
                    for person, previous in zip(
                        self.estimator.estimate_boxes(detection_image, boxes), self._previous, strict=True
                    )
                ]
                self.tracker.refresh(persons)
            self._previous = persons
            if self.smoother is not None:
                persons = self.smoother(persons, seconds[position])
            results.append(persons)
        return results


def open_video_source(location: str, storage: Storage):
    """A path PyAV can open, or an open binary file for a URL (the caller closes it)."""
    if is_url(location):
        filesystem = storage.filesystem(location)
        return filesystem.open(filesystem._strip_protocol(location), "rb")
    try:
        storage.open_input(location).close()  # a FIFO or device would block the decoder forever
    except NotRegularFileError as error:
        raise ItemError(error.strerror) from error
    except IsADirectoryError as error:
        raise ItemError("is a folder, not a file") from error
    return location


def render_video(
    item: WorkItem,
    estimator: PoseEstimator,
    job: JobSettings,
    storage: Storage,
    stop: threading.Event | None = None,
    on_frame: Callable[[], None] | None = None,
    batch_size: int = 1,
) -> tuple[int, str]:
    """Render a video item: map video (and overlay video, per-frame JSON and PNGs, the sequence JSON).

    Returns the frame count and a warning ("" when none: a partial video, frames of another size).
    Decoding runs ahead in a thread, encoding and file writes behind in another; ``batch_size``
    frames at a time go through the networks together (the same numbers as one at a time); every
    frame keeps its input timestamp. The outputs are published together once every frame is
    written: the per-frame folder (replacing the old one whole), the overlay video, then the map.
    On any error or interruption nothing of this run appears under the final names. With
    ``job.sequence`` the clip is processed whole (:mod:`dwpose_ctrl.engines.sequence_video`).
    """
    import av

    if job.sequence is not None:
        from dwpose_ctrl.engines.sequence_video import render_video_sequence

        return render_video_sequence(item, estimator, job, storage, stop, on_frame, batch_size)
    source = open_video_source(item.source.location, storage)
    try:
        with open_video(source, job.max_pixels) as (info, frames), contextlib.ExitStack() as staged:
            check_image_size(info.height, info.width, "video frame", job.max_pixels)
            out_height, out_width = job.render.output_size(info.height, info.width)
            encoder = open_frame_encoder(item, storage, staged, job, info, (out_height, out_width), on_frame)
            result = _encode_frames(info, frames, encoder, estimator, job, stop, batch_size)
            if item.json is not None:
                storage.write_bytes(item.json, encode_json(encoder.sequence_json))
            return result
    except av.FFmpegError as error:
        raise ItemError(f"broken or unsupported video: {error}") from error
    finally:
        if not isinstance(source, str):
            source.close()


def open_frame_encoder(item, storage, staged, job, info, size: tuple[int, int], on_frame) -> _FrameEncoder:
    """The writers of the map video (and the overlay video) of ``size`` (height, width) and the
    staged per-frame folder, entered in ``staged`` so that they are published when it closes."""
    codec = VIDEO_CODECS[job.outputs.video_codec]
    height, width = size
    finals = [item.final] if item.overlay is None else [item.final, item.overlay]
    writers = [
        _FrameEncoder.create(
            lambda path: VideoWriter(
                path,
                codec.encoder,
                codec.pixel_format,
                width,
                height,
                info.time_base,
                info.average_rate,
                container_format=codec.container,
            ),
            staged.enter_context(storage.staged_output(final, codec.extension)),
        )
        for final in finals
    ]
    frames_dir = None
    if item.frames_dir is not None and (job.outputs.json or job.outputs.frames):
        frames_dir = staged.enter_context(storage.staged_folder(item.frames_dir))
    return _FrameEncoder(writers, frames_dir, job.outputs, on_frame)


def batches(frames, size: int):
    """Lists of ``size`` consecutive items (the last one shorter)."""
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_frames(info, frames, encoder, estimator, job, stop, batch_size) -> tuple[int, str]:
    """Estimate, draw and encode every frame; the count and a warning (raise before publishing)."""
    pose_tracker = VideoPoseTracker(estimator, job.detect_every, job.smoothing)
    background = BackgroundWorker(size=job.video_prefetch, name="dwpose-video-writer")
    count, last, resized = 0, None, None
    try:
        for batch in batches(prefetch(frames, job.video_prefetch), batch_size):
            if stop is not None and stop.is_set():
                raise Interrupted(f"stopped at frame {batch[0].index}")
            detection_images = [job.render.detection_image(frame.image) for frame in batch]
            tracked = pose_tracker.track(
                [frame.index for frame in batch],
                detection_images,
                [frame.seconds for frame in batch],
                [
                    job.render.detection_scale(frame.image, image)
                    for frame, image in zip(batch, detection_images, strict=True)
                ],
            )
            for frame, detection_image, persons in zip(batch, detection_images, tracked, strict=True):
                rendered = render_outputs(
                    frame.image,
                    detection_image,
                    persons,
                    job.render,
                    job.outputs.json,
                    len(encoder.writers) > 1,
                    estimator.keypoint_threshold,
                )
                background.submit(encoder.task(frame.index, frame.pts, rendered))
                if resized is None and frame.decoded_size is not None:
                    resized = (frame.index, frame.decoded_size)
                count, last = count + 1, frame
        if count == 0:
            raise ItemError("the video has no decodable frame")
        background.close()
        encoder.close()
    except BaseException:
        background.cancel()
        encoder.abort()
        raise
    return count, video_warnings(info, count, last, resized)


def video_warnings(info, count: int, last, resized: tuple[int, tuple[int, int]] | None) -> str:
    """The warning of a video item ("" when none): frames missing at the end, a size change."""
    warnings = [missing_frames(info, count, last)]
    if resized is not None:
        (width, height), index = resized[1], resized[0]
        warnings.append(
            f"the frame size changes mid-stream (frame {index} is {width}x{height}); such frames were "
            f"scaled to the first frame's {info.width}x{info.height}"
        )
    return "; ".join(warning for warning in warnings if warning)


@dataclass
class _FrameEncoder:
    """Writes each frame's per-frame files into the staged frames folder and encodes its maps."""

    writers: list[VideoWriter]
    frames_dir: str | None
    options: OutputOptions
    on_frame: Callable[[], None] | None
    sequence_json: list[dict] = field(default_factory=list)

    def task(self, index: int, pts: int, rendered: RenderedOutputs) -> Callable[[], None]:
        def write() -> None:
            if self.options.json:
                self.sequence_json.append(rendered.openpose_json)
            if self.frames_dir is not None:
                name = os.path.join(self.frames_dir, frame_name(index))
                if self.options.json:
                    _write_file(name + ".json", encode_json(rendered.openpose_json))
                if self.options.frames:
                    _write_file(name + ".png", encode_png(rendered.control_map))
            self._encode(lambda: self.writers[0].write(rendered.control_map, pts))
            if len(self.writers) > 1:
                self._encode(lambda: self.writers[1].write(rendered.overlay, pts))
            if self.on_frame is not None:
                self.on_frame()

        return write

    @staticmethod
    def create(make: Callable[[str], VideoWriter], path: str) -> VideoWriter:
        """A writer for the staged file ``path``; FFmpeg's errors reworded as :meth:`_encode` does."""
        writers: list[VideoWriter] = []
        _FrameEncoder._encode(lambda: writers.append(make(path)))
        return writers[0]

    @staticmethod
    def _encode(step: Callable[[], object]) -> None:
        import av

        try:
            step()
        except av.FFmpegError as error:
            # the message would name our temporary file and "broken video" would blame the input
            raise ItemError(f"encoding the output video failed: {error.strerror or error}") from error

    def close(self) -> None:
        for writer in self.writers:
            self._encode(writer.close)

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


# the shared per-item function -------------------------------------------------------------------
def process_item(
    item: WorkItem,
    estimator: PoseEstimator,
    job: JobSettings,
    storage: Storage,
    stop: threading.Event | None = None,
    on_frame: Callable[[], None] | None = None,
    batch_size: int = 1,
) -> ItemResult:
    """Do one whole item; bad input gives a failed result with its reason, never an exception.

    ``batch_size``: video frames estimated together (the results equal one at a time). A done
    item's ``reason`` holds a warning when there is one (a partial video).
    """
    started = time.perf_counter()
    location = item.source.location
    warning = ""
    try:
        if item.kind == "video":
            frames, warning = render_video(item, estimator, job, storage, stop, on_frame, batch_size)
        else:
            loaded = read_image(item, storage, job)
            persons = estimate_image(loaded, estimator)
            finish_image(item, loaded, persons, storage, job, estimator.keypoint_threshold)
            frames = 1
    except Interrupted as error:
        return ItemResult(location, INTERRUPTED, str(error), seconds=time.perf_counter() - started)
    except Exception as error:
        return ItemResult(location, FAILED, describe_error(error), seconds=time.perf_counter() - started)
    return ItemResult(location, DONE, warning, frames=frames, seconds=time.perf_counter() - started)


def process_items(
    items: list[WorkItem],
    estimator: PoseEstimator,
    job: JobSettings,
    storage: Storage,
    stop: threading.Event | None = None,
    batch_size: int = 1,
) -> list[ItemResult]:
    """Do several items, in order of ``items``: all the images through the networks in one batched
    call (a bad image fails alone), then each video with ``batch_size`` frames per call.

    Items not started because ``stop`` was set are reported interrupted; never raises for bad input.
    """
    results: dict[int, ItemResult] = {}
    started = time.perf_counter()

    def failed(location: str, error: Exception) -> ItemResult:
        return ItemResult(location, FAILED, describe_error(error), seconds=time.perf_counter() - started)

    loaded: list[tuple[int, LoadedImage]] = []
    for index, item in enumerate(items):
        location = item.source.location
        if item.kind != "image":
            continue
        if stop is not None and stop.is_set():
            results[index] = ItemResult(location, INTERRUPTED, "not started")
            continue
        try:
            loaded.append((index, read_image(item, storage, job)))
        except Exception as error:
            results[index] = failed(location, error)
    found = estimate_images(
        estimator, [one.detection_image for _, one in loaded], [one.scale for _, one in loaded]
    )
    for (index, one), persons in zip(loaded, found, strict=True):
        location = items[index].source.location
        try:
            if isinstance(persons, Exception):
                raise persons
            finish_image(items[index], one, persons, storage, job, estimator.keypoint_threshold)
        except Exception as error:
            results[index] = failed(location, error)
        else:
            results[index] = ItemResult(location, DONE, frames=1, seconds=time.perf_counter() - started)
    for index, item in enumerate(items):
        if item.kind != "image":
            if stop is not None and stop.is_set():
                results[index] = ItemResult(item.source.location, INTERRUPTED, "not started")
            else:
                results[index] = process_item(item, estimator, job, storage, stop, batch_size=batch_size)
    return [results[index] for index in range(len(items))]
