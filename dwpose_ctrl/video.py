"""Videos: decoding and encoding with PyAV, person tracking with stable IDs, One-Euro smoothing.

* :func:`read_video` yields RGB frames with their presentation timestamps (``pts`` in the stream's
  ``time_base``), so constant and variable frame rates are both kept by :class:`VideoWriter`,
  which writes every frame with the timestamp it had in the input.
* :class:`BoxTracker` gives each person an ID that stays the same from frame to frame while the
  person is tracked (greedy IoU matching of boxes).
* :func:`boxes_from_persons` turns one frame's keypoints into the person boxes for the next frame,
  so the person detector only needs to run every N frames (``--detect-every N``).
* :class:`OneEuroFilter` / :class:`KeypointSmoother` smooth keypoints over time (Casiez et al.,
  CHI 2012); off by default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from dwpose_ctrl.files import check_regular_file
from dwpose_ctrl.keypoints import Person

# decoding ---------------------------------------------------------------------------------------


class VideoError(ValueError):
    """A video that cannot be rendered as it is (too large, broken timing), with the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to reproduce the input's timing.

    ``end_seconds`` is where the stream says it ends (start + duration), ``None`` when unknown;
    ``frame_count`` the number of frames its header announces, ``None`` when it does not say.
    """

    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    frame_count: int | None
    codec: str
    end_seconds: float | None = None


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: RGB uint8 (H, W, 3), its index, its timestamp in ``time_base`` units and seconds.

    ``decoded_size`` is the (width, height) the stream gave this frame when it differs from the
    first frame's (the image is then scaled to the first frame's size), else ``None``;
    ``duration`` how long it shows in seconds, when the stream says.
    """

    index: int
    image: np.ndarray
    pts: int
    seconds: float
    decoded_size: tuple[int, int] | None = None
    duration: float | None = None


def check_frame_size(width: int, height: int, max_pixels: int | None, where: str) -> None:
    """Refuse frames of no size or of more than ``max_pixels`` pixels (``where`` names the frame)."""
    if width < 1 or height < 1:
        raise VideoError(
            f"{where} has no valid size (FFmpeg reads {width}x{height}: the header is broken or the frame "
            "is larger than FFmpeg itself accepts)"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise VideoError(
            f"decompression bomb: {where} is {width}x{height} = {width * height} pixels, more than "
            f"--max-pixels {max_pixels}; raise the limit only for files you trust"
        )


def _stream_end(stream, container, time_base: Fraction) -> float | None:
    if stream.duration:
        start = stream.start_time or 0
        return float((start + stream.duration) * time_base)
    if container.duration:
        start = container.start_time or 0
        return (start + container.duration) / 1_000_000
    return None


@contextlib.contextmanager
def open_video(source, max_pixels: int | None = None) -> Iterator[tuple[VideoInfo, Iterator[VideoFrame]]]:
    """Open a video file (path or binary file object); yield its info and a frame iterator.

    The frame size is checked against ``max_pixels`` from the stream's header before anything is
    decoded, and again for every frame (:class:`VideoError`). Frames whose size differs from the
    first frame's are scaled to it; timestamps that do not increase raise :class:`VideoError`.
    Raises ``ValueError`` when the file has no video stream; PyAV's own errors
    (``av.FFmpegError``) describe unreadable or broken files. A path must name a regular file: a
    FIFO or a device raises :class:`~dwpose_ctrl.files.NotRegularFileError` instead of blocking.
    """
    import av

    if isinstance(source, (str, os.PathLike)):
        check_regular_file(source, "video file")
    container = av.open(source, mode="r")
    try:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        check_frame_size(
            stream.codec_context.width, stream.codec_context.height, max_pixels, "the video frame"
        )
        stream.thread_type = "AUTO"
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 25)
        rate = Fraction(stream.average_rate) if stream.average_rate else None
        info = VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            time_base=time_base,
            average_rate=rate,
            frame_count=stream.frames or None,
            codec=stream.codec_context.name,
            end_seconds=_stream_end(stream, container, time_base),
        )

        def frames() -> Iterator[VideoFrame]:
            previous_pts = None
            step = round(1 / (rate * time_base)) if rate else 1
            for index, frame in enumerate(container.decode(stream)):
                check_frame_size(frame.width, frame.height, max_pixels, f"frame {index}")
                pts = frame.pts
                if pts is None:
                    pts = 0 if previous_pts is None else previous_pts + max(step, 1)
                elif previous_pts is not None and pts <= previous_pts:
                    at, before = float(pts * time_base), float(previous_pts * time_base)
                    raise VideoError(
                        f"the input's timestamps do not increase: frame {index} is at {at:.3f} s, "
                        f"after a frame at {before:.3f} s "
                        "(the file's timing is broken; re-encode it, e.g. ffmpeg -i IN -vf "
                        "setpts=N/FRAME_RATE/TB OUT.mp4)"
                    )
                previous_pts = pts
                size = (frame.width, frame.height)
                if size == (info.width, info.height):
                    image, decoded_size = frame.to_ndarray(format="rgb24"), None
                else:
                    image = frame.to_ndarray(format="rgb24", width=info.width, height=info.height)
                    decoded_size = size
                duration = float(frame.duration * time_base) if frame.duration else None
                yield VideoFrame(index, image, int(pts), float(pts * time_base), decoded_size, duration)

        yield info, frames()
    finally:
        container.close()


def missing_frames(info: VideoInfo, decoded: int, last: VideoFrame) -> str | None:
    """Why a decoded stream looks cut short (fewer frames than its header announces, or its last
    frame ends well before the end the header gives), or ``None`` when it looks whole."""
    if info.frame_count is not None and decoded < info.frame_count:
        return f"partial video: {decoded} of the {info.frame_count} frames its header announces were decoded"
    if info.end_seconds is None:
        return None
    interval = float(1 / info.average_rate) if info.average_rate else 0.1
    decoded_until = last.seconds + (last.duration or interval)
    if decoded_until + interval < info.end_seconds:
        return (
            f"partial video: the {decoded} decoded frames end at {decoded_until:.3f} s, the header says it "
            f"lasts until {info.end_seconds:.3f} s (the file is truncated or damaged)"
        )
    return None


def read_video(source, max_pixels: int | None = None) -> tuple[VideoInfo, list[VideoFrame]]:
    """Decode a whole video into memory (tests and small clips; the engines stream instead)."""
    with open_video(source, max_pixels) as (info, frames):
        return info, list(frames)


# encoding ---------------------------------------------------------------------------------------

_CODEC_OPTIONS: dict[str, dict[str, str]] = {
    # mbtree off: with it libx264's output was seen to vary from run to run in a long-lived process
    "libx264": {"crf": "16", "preset": "medium", "x264-params": "mbtree=0"},
    "libx264rgb": {"crf": "0", "preset": "medium", "qp": "0"},
    "ffv1": {"level": "3", "slicecrc": "1"},
    "png": {},
}


class VideoWriter:
    """Encode RGB frames into ``path`` with the given codec, keeping each frame's timestamp.

    ``codec`` is a PyAV encoder name (``libx264``, ``libx264rgb``, ``ffv1``, ``png``) and
    ``pixel_format`` its pixel format. Frames must be written in presentation order with strictly
    increasing ``pts`` in ``time_base`` units. The output is bit-exact (no random IDs or dates in
    the container; libx264 without macroblock-tree rate control, whose output was seen to vary
    from run to run), so two runs produce identical files.
    """

    def __init__(
        self,
        path: str,
        codec: str,
        pixel_format: str,
        width: int,
        height: int,
        time_base: Fraction,
        average_rate: Fraction | None,
        container_format: str | None = None,
    ):
        import av

        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be positive, got {width}x{height}")
        if pixel_format == "yuv420p" and (width % 2 or height % 2):
            raise ValueError(
                f"{codec} with {pixel_format} needs even sizes, got {width}x{height}; use a lossless codec "
                "(--video-codec ffv1) or an image resolution (multiples of 64)"
            )
        self._container = av.open(path, mode="w", format=container_format, options={"fflags": "+bitexact"})
        rate = average_rate or Fraction(1, 1) / time_base
        stream = self._container.add_stream(codec, rate=rate, options=dict(_CODEC_OPTIONS.get(codec, {})))
        stream.width = width
        stream.height = height
        stream.pix_fmt = pixel_format
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {**stream.codec_context.options, "flags": "+bitexact"}
        self._stream = stream
        self._time_base = time_base
        self._width, self._height = width, height
        self.frames_written = 0

    def write(self, image: np.ndarray, pts: int) -> None:
        import av

        if image.shape != (self._height, self._width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 ({self._height}, {self._width}, 3), got {image.dtype} {image.shape}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = int(pts)
        frame.time_base = self._time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def abort(self) -> None:
        """Close without flushing (the file is discarded by the caller)."""
        with contextlib.suppress(Exception):
            self._container.close()


# tracking ---------------------------------------------------------------------------------------


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) xyxy boxes."""
    first = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    second = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_first = np.clip(first[:, 2:] - first[:, :2], 0, None).prod(axis=1)
    area_second = np.clip(second[:, 2:] - second[:, :2], 0, None).prod(axis=1)
    union = area_first[:, None] + area_second[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


class BoxTracker:
    """Stable person IDs across frames by greedy IoU matching of person boxes.

    Each frame's persons are matched to the live tracks, highest IoU first (ties: lower track and
    person index first); a match needs IoU >= ``iou_threshold``. Unmatched persons start new tracks
    with the next integer ID (0, 1, 2, ...); a track unmatched for more than ``max_missed`` frames
    ends and its ID is never reused.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10):
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._boxes: dict[int, np.ndarray] = {}
        self._missed: dict[int, int] = {}
        self._next_id = 0

    @property
    def live_ids(self) -> list[int]:
        return sorted(self._boxes)

    def update(self, persons: list[Person]) -> list[Person]:
        """Return ``persons`` (same order) with ``track_id`` set."""
        ids = self.live_ids
        assigned: dict[int, int] = {}
        if ids and persons:
            iou = box_iou(np.stack([self._boxes[i] for i in ids]), np.stack([p.box for p in persons]))
            while True:
                best = int(np.argmax(iou))
                track_row, person_col = divmod(best, iou.shape[1])
                if iou[track_row, person_col] < self.iou_threshold:
                    break
                assigned[person_col] = ids[track_row]
                iou[track_row, :] = -1
                iou[:, person_col] = -1
        result = []
        for index, person in enumerate(persons):
            track_id = assigned.get(index)
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
            self._boxes[track_id] = np.asarray(person.box, dtype=np.float64)
            self._missed[track_id] = 0
            result.append(dataclasses.replace(person, track_id=track_id))
        self._age_unmatched(ids, {person.track_id for person in result})
        return result

    def refresh(self, persons: list[Person]) -> None:
        """Record new boxes for persons that kept their ``track_id`` (tracked without detection)."""
        ids = self.live_ids
        for person in persons:
            if person.track_id not in self._boxes:
                raise ValueError(f"track {person.track_id} is not live; live tracks are {ids}")
            self._boxes[person.track_id] = np.asarray(person.box, dtype=np.float64)
            self._missed[person.track_id] = 0
        self._age_unmatched(ids, {person.track_id for person in persons})

    def _age_unmatched(self, ids: list[int], matched: set) -> None:
        for track_id in ids:
            if track_id not in matched:
                self._missed[track_id] += 1
                if self._missed[track_id] > self.max_missed:
                    del self._boxes[track_id], self._missed[track_id]


def boxes_from_persons(
    persons: list[Person], threshold: float = 0.3, min_points: int = 2
) -> list[np.ndarray]:
    """Person boxes for the next frame: the extent of each person's visible keypoints.

    A person with fewer than ``min_points`` keypoints scoring above ``threshold`` keeps its own box.
    The pose model pads every box by 1.25 itself, so the extent needs no margin.
    """
    boxes = []
    for person in persons:
        visible = person.keypoints[person.scores > threshold]
        if len(visible) >= min_points:
            (x1, y1), (x2, y2) = visible.min(axis=0), visible.max(axis=0)
            if x2 > x1 and y2 > y1:
                boxes.append(np.array([x1, y1, x2, y2], dtype=np.float64))
                continue
        boxes.append(np.asarray(person.box, dtype=np.float64))
    return boxes


# smoothing --------------------------------------------------------------------------------------


def _smoothing_factor(cutoff: np.ndarray | float, elapsed: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / elapsed)


class OneEuroFilter:
    """The One-Euro filter on arrays: little lag when things move fast, little jitter when still.

    ``min_cutoff`` (Hz) sets the smoothing at rest (lower: smoother), ``beta`` how fast the cutoff
    rises with speed (higher: less lag), ``derivative_cutoff`` (Hz) the smoothing of the speed.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, derivative_cutoff: float = 1.0):
        if min_cutoff <= 0 or derivative_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and derivative_cutoff must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._time: float | None = None

    def reset(self) -> None:
        self._value = self._speed = self._time = None

    def __call__(self, value: np.ndarray, seconds: float) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if (
            self._value is None
            or self._time is None
            or seconds <= self._time
            or value.shape != self._value.shape
        ):
            self._value, self._speed, self._time = value.copy(), np.zeros_like(value), seconds
            return value.copy()
        elapsed = seconds - self._time
        speed = (value - self._value) / elapsed
        speed_alpha = _smoothing_factor(self.derivative_cutoff, elapsed)
        self._speed = speed_alpha * speed + (1 - speed_alpha) * self._speed
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        alpha = _smoothing_factor(cutoff, elapsed)
        self._value = alpha * value + (1 - alpha) * self._value
        self._time = seconds
        return self._value.copy()


class KeypointSmoother:
    """One :class:`OneEuroFilter` per tracked person; keypoints move, scores and boxes stay."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, derivative_cutoff: float = 1.0):
        self._settings = (min_cutoff, beta, derivative_cutoff)
        OneEuroFilter(*self._settings)
        self._filters: dict[int, OneEuroFilter] = {}

    def __call__(self, persons: list[Person], seconds: float) -> list[Person]:
        smoothed = []
        for person in persons:
            if person.track_id is None:
                raise ValueError("KeypointSmoother needs tracked persons (track_id set by BoxTracker)")
            keypoint_filter = self._filters.setdefault(person.track_id, OneEuroFilter(*self._settings))
            smoothed.append(dataclasses.replace(person, keypoints=keypoint_filter(person.keypoints, seconds)))
        alive = {person.track_id for person in persons}
        for track_id in list(self._filters):
            if track_id not in alive:
                del self._filters[track_id]
        return smoothed
