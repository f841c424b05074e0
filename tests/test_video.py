"""Video I/O (timing, lossless codecs), tracking IDs, One-Euro smoothing and video items."""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from render_fakes import BlobEstimator, blob_image, person_in_box

from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, Smoothing, Source, Storage, plan
from dwpose_ctrl.engines.item import process_item
from dwpose_ctrl.engines.plan import VIDEO_CODECS
from dwpose_ctrl.video import (
    BoxTracker,
    KeypointSmoother,
    OneEuroFilter,
    VideoWriter,
    box_iou,
    boxes_from_persons,
    read_video,
)

SMALL = RenderSettings(detect_resolution=128, image_resolution=128)


def moving_frames(count: int, size=(96, 128)) -> list[np.ndarray]:
    """Two white blobs moving towards each other (never touching)."""
    height, width = size
    return [
        blob_image(height, width, [(4 + 3 * t, 10, 20, 50), (100 - 3 * t, 30, 16, 40)], seed=t)
        for t in range(count)
    ]


def write_video(
    path, frames, codec="libx264", pixel_format="yuv420p", time_base=Fraction(1, 25), pts=None, rate=25
):
    height, width = frames[0].shape[:2]
    writer = VideoWriter(str(path), codec, pixel_format, width, height, time_base, Fraction(rate))
    for index, frame in enumerate(frames):
        writer.write(frame, index if pts is None else pts[index])
    writer.close()
    return path


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# writer / reader ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["h264-lossless", "ffv1", "png"])
def test_lossless_codecs_round_trip_exact_pixels(tmp_path, name):
    codec = VIDEO_CODECS[name]
    frames = moving_frames(4)
    path = tmp_path / f"clip{codec.extension}"
    writer = VideoWriter(str(path), codec.encoder, codec.pixel_format, 128, 96, Fraction(1, 25), Fraction(25))
    for index, frame in enumerate(frames):
        writer.write(frame, index)
    writer.close()
    info, decoded = read_video(str(path))
    assert len(decoded) == 4 and info.average_rate == 25
    for original, back in zip(frames, decoded, strict=True):
        np.testing.assert_array_equal(back.image, original)


def test_h264_is_lossy_but_keeps_frame_count_and_rate(tmp_path):
    frames = moving_frames(7)
    path = write_video(tmp_path / "clip.mp4", frames, rate=30, time_base=Fraction(1, 30))
    info, decoded = read_video(str(path))
    assert len(decoded) == 7 and info.average_rate == 30
    assert [frame.seconds for frame in decoded] == pytest.approx([i / 30 for i in range(7)])


def test_writer_is_bit_exact_between_runs(tmp_path):
    frames = moving_frames(5)
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", frames)
        write_video(tmp_path / f"{name}.mkv", frames, codec="ffv1", pixel_format="bgr0")
    assert sha(tmp_path / "a.mp4") == sha(tmp_path / "b.mp4")
    assert sha(tmp_path / "a.mkv") == sha(tmp_path / "b.mkv")


def test_writer_refuses_wrong_frames(tmp_path):
    writer = VideoWriter(str(tmp_path / "x.mkv"), "ffv1", "bgr0", 64, 48, Fraction(1, 25), Fraction(25))
    with pytest.raises(ValueError, match="frame must be uint8"):
        writer.write(np.zeros((48, 65, 3), np.uint8), 0)
    writer.abort()
    with pytest.raises(ValueError, match="even sizes"):
        VideoWriter(str(tmp_path / "y.mp4"), "libx264", "yuv420p", 63, 48, Fraction(1, 25), Fraction(25))


# tracking -------------------------------------------------------------------------------------
def test_box_iou_values():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_tracker_keeps_ids_while_boxes_overlap_and_never_reuses_them():
    tracker = BoxTracker(iou_threshold=0.3, max_missed=1)
    first = tracker.update([person_in_box([0, 0, 10, 20]), person_in_box([50, 0, 60, 20])])
    assert [p.track_id for p in first] == [0, 1]
    # listed in the other order and moved a little: same IDs
    second = tracker.update([person_in_box([52, 1, 62, 21]), person_in_box([1, 0, 11, 20])])
    assert [p.track_id for p in second] == [1, 0]
    # a newcomer far away gets a new ID
    third = tracker.update([person_in_box([2, 0, 12, 20]), person_in_box([100, 0, 110, 20])])
    assert [p.track_id for p in third] == [0, 2]
    # missed once (<= max_missed): track 1 is still live and matches
    assert [p.track_id for p in tracker.update([person_in_box([52, 1, 62, 21])])] == [1]
    # missed twice (> max_missed): track 1 ends; a person back at its place gets a fresh ID
    tracker.update([person_in_box([2, 0, 12, 20])])
    tracker.update([person_in_box([2, 0, 12, 20])])
    assert [p.track_id for p in tracker.update([person_in_box([52, 1, 62, 21])])] == [3]


def test_boxes_from_persons_uses_visible_keypoints():
    person = person_in_box([10, 10, 110, 210])
    scores = person.scores.copy()
    scores[:] = 0.1
    scores[[0, 1]] = 0.9
    keypoints = person.keypoints.copy()
    keypoints[0], keypoints[1] = (20, 30), (60, 90)
    sparse = type(person)(keypoints, scores, person.box, 0.9)
    boxes = boxes_from_persons([sparse, person_in_box([0, 0, 5, 5])], threshold=0.3)
    np.testing.assert_array_equal(boxes[0], [20, 30, 60, 90])
    small = person_in_box([0, 0, 5, 5]).keypoints
    np.testing.assert_allclose(boxes[1], [*small.min(axis=0), *small.max(axis=0)])
    lonely = type(person)(keypoints, np.where(np.arange(133) == 0, 0.9, 0.1), person.box, 0.9)
    np.testing.assert_array_equal(boxes_from_persons([lonely])[0], person.box)


# smoothing ------------------------------------------------------------------------------------
def test_one_euro_filter_matches_hand_computation():
    smoother = OneEuroFilter(min_cutoff=1.0, beta=0.5, derivative_cutoff=1.0)
    assert smoother(np.array([0.0]), 0.0)[0] == 0.0
    elapsed = 0.1
    speed_alpha = 1 / (1 + (1 / (2 * math.pi * 1.0)) / elapsed)
    speed = speed_alpha * (10.0 / elapsed)
    cutoff = 1.0 + 0.5 * abs(speed)
    alpha = 1 / (1 + (1 / (2 * math.pi * cutoff)) / elapsed)
    assert smoother(np.array([10.0]), 0.1)[0] == pytest.approx(alpha * 10.0)


def test_one_euro_filter_reduces_jitter_and_follows_constant_signal():
    rng = np.random.default_rng(0)
    smoother = OneEuroFilter(min_cutoff=0.5, beta=0.0)
    noisy = 100 + rng.normal(0, 2, size=200)
    smoothed = np.array([smoother(np.array([value]), i / 30)[0] for i, value in enumerate(noisy)])
    assert np.std(np.diff(smoothed[50:])) < 0.2 * np.std(np.diff(noisy[50:]))
    steady = OneEuroFilter()
    assert [steady(np.array([5.0]), t / 10)[0] for t in range(5)] == [5.0] * 5


def test_keypoint_smoother_needs_track_ids():
    with pytest.raises(ValueError, match="track_id"):
        KeypointSmoother()([person_in_box([0, 0, 10, 10])], 0.0)


# video items ----------------------------------------------------------------------------------
def video_item(tmp_path, source_path, **outputs):
    options = OutputOptions(**outputs)
    (item,) = plan([Source(str(source_path), source_path.name, "video")], str(tmp_path / "out"), options)
    return item, options


def test_video_item_frames_timing_json_ids_and_per_frame_pngs(tmp_path):
    source = write_video(tmp_path / "clip.mp4", moving_frames(10), rate=25)
    item, options = video_item(tmp_path, source, json=True, frames=True, video_codec="ffv1")
    job = JobSettings(render=SMALL, outputs=options)
    result = process_item(item, BlobEstimator(), job, Storage())
    assert result.status == "done" and result.frames == 10
    info, decoded = read_video(item.final)
    assert len(decoded) == 10 and info.average_rate == 25
    assert [f.seconds for f in decoded] == pytest.approx([i / 25 for i in range(10)], abs=1e-3)
    frames_dir = tmp_path / "out" / "clip"
    ids = []
    for index, frame in enumerate(decoded):
        data = json.loads((frames_dir / f"{index:06d}.json").read_text())
        assert data["canvas_width"] == 128 and data["canvas_height"] == 96
        ids.append([person["person_id"][0] for person in data["people"]])
        png = np.asarray(Image.open(frames_dir / f"{index:06d}.png").convert("RGB"))
        np.testing.assert_array_equal(frame.image, png)  # ffv1 is lossless: video == per-frame maps
    assert ids == [[0, 1]] * 10


def test_detect_every_tracks_boxes_between_detections(tmp_path):
    source = write_video(tmp_path / "clip.mp4", moving_frames(9))
    item, options = video_item(tmp_path, source, json=True)
    estimator = BlobEstimator()
    job = JobSettings(render=SMALL, outputs=options, detect_every=4)
    assert process_item(item, estimator, job, Storage()).status == "done"
    assert estimator.calls == 3 and estimator.box_calls == 6  # frames 0, 4, 8 detect
    for index in range(9):
        data = json.loads((tmp_path / "out" / "clip" / f"{index:06d}.json").read_text())
        assert [person["person_id"] for person in data["people"]] == [[0], [1]]


def test_smoothing_changes_keypoints_but_not_frame_count(tmp_path):
    source = write_video(tmp_path / "clip.mp4", moving_frames(6))
    outputs = {}
    for name, smoothing in (("raw", None), ("smooth", Smoothing(0.1, 0.0))):
        folder = tmp_path / name
        folder.mkdir()
        item, options = video_item(folder, source, json=True)
        job = JobSettings(render=SMALL, outputs=options, smoothing=smoothing)
        assert process_item(item, BlobEstimator(), job, Storage()).frames == 6
        outputs[name] = [
            json.loads((folder / "out" / "clip" / f"{i:06d}.json").read_text())["people"][0][
                "pose_keypoints_2d"
            ]
            for i in range(6)
        ]
    assert outputs["raw"][0] == outputs["smooth"][0]
    raw_motion = abs(outputs["raw"][5][0] - outputs["raw"][0][0])
    smooth_motion = abs(outputs["smooth"][5][0] - outputs["smooth"][0][0])
    assert 0 < smooth_motion < raw_motion


def test_variable_frame_rate_gif_keeps_timestamps(tmp_path):
    frames = [Image.fromarray(image) for image in moving_frames(5)]
    source = tmp_path / "anim.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=[100, 200, 50, 300, 100], loop=0)
    item, options = video_item(tmp_path, source, video_codec="ffv1")
    assert (
        process_item(item, BlobEstimator(), JobSettings(render=SMALL, outputs=options), Storage()).frames == 5
    )
    _, decoded = read_video(item.final)
    assert [frame.seconds for frame in decoded] == pytest.approx([0.0, 0.1, 0.3, 0.35, 0.65])


@pytest.mark.parametrize(
    ("extension", "codec", "pixel_format"), [(".webm", "libvpx-vp9", "yuv420p"), (".mov", "png", "rgb24")]
)
def test_webm_and_mov_inputs(tmp_path, extension, codec, pixel_format):
    source = write_video(
        tmp_path / f"clip{extension}", moving_frames(3), codec=codec, pixel_format=pixel_format
    )
    item, options = video_item(tmp_path, source)
    result = process_item(item, BlobEstimator(), JobSettings(render=SMALL, outputs=options), Storage())
    assert result.status == "done" and result.frames == 3
    assert item.final.endswith("clip.mp4")
    assert len(read_video(item.final)[1]) == 3


def test_rerendering_a_video_is_byte_identical_with_or_without_overlap(tmp_path):
    source = write_video(tmp_path / "clip.mp4", moving_frames(5))
    digests = []
    for run in range(6):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        item, options = video_item(folder, source, overlay=True)
        job = JobSettings(render=SMALL, outputs=options, video_prefetch=0 if run == 5 else 8)
        assert process_item(item, BlobEstimator(), job, Storage()).frames == 5
        digests.append((sha(item.final), sha(item.overlay)))
    assert len(set(digests)) == 1


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 10, "truncated"])
def test_broken_videos_fail_with_a_reason_and_leave_nothing(tmp_path, content):
    source = tmp_path / "broken.mp4"
    if content == "truncated":
        write_video(tmp_path / "good.mp4", moving_frames(8))
        content = (tmp_path / "good.mp4").read_bytes()[:300]
    source.write_bytes(content)
    item, options = video_item(tmp_path, source, json=True)
    result = process_item(item, BlobEstimator(), JobSettings(render=SMALL, outputs=options), Storage())
    assert result.status == "failed" and result.reason
    out = tmp_path / "out"
    assert not out.exists() or not any(path.suffix in (".mp4", ".dwpose-partial") for path in out.rglob("*"))


def test_video_without_frames_fails_and_publishes_nothing(tmp_path, monkeypatch):
    import contextlib

    import dwpose_ctrl.engines.item as item_module

    source = write_video(tmp_path / "clip.mp4", moving_frames(2))

    real_open_video = item_module.open_video

    @contextlib.contextmanager
    def no_frames(path, max_pixels=None):
        with real_open_video(path, max_pixels) as (info, _):
            yield info, iter(())

    monkeypatch.setattr(item_module, "open_video", no_frames)
    item, options = video_item(tmp_path, source)
    result = process_item(item, BlobEstimator(), JobSettings(render=SMALL, outputs=options), Storage())
    assert (result.status, result.reason) == ("failed", "the video has no decodable frame")
    assert not (tmp_path / "out").exists() or [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_stopping_mid_video_leaves_no_video_and_is_redone_next_time(tmp_path):
    import threading

    source = write_video(tmp_path / "clip.mp4", moving_frames(12))
    item, options = video_item(tmp_path, source, json=True, overlay=True)
    job = JobSettings(render=SMALL, outputs=options)
    stop = threading.Event()
    frames_done = []

    def on_frame():
        frames_done.append(1)
        if len(frames_done) == 3:
            stop.set()

    result = process_item(item, BlobEstimator(), job, Storage(), stop=stop, on_frame=on_frame)
    assert result.status == "interrupted" and result.reason.startswith("stopped at frame")
    names = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert not any(name.endswith((".mp4", ".dwpose-partial")) for name in names)
    assert process_item(item, BlobEstimator(), job, Storage()).frames == 12
    assert len(read_video(item.final)[1]) == 12 and len(read_video(item.overlay)[1]) == 12


@pytest.mark.parametrize("dynamic", [True, False])
def test_detector_estimate_boxes_equals_estimate_on_the_same_boxes(
    tmp_path, yolox_nano_path, val5_dir, dynamic
):
    from onnx_graphs import pose_like

    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.engines import DetectorEstimator

    pose = pose_like(tmp_path / "pose.onnx", input_size=(64, 48), dynamic=dynamic, seed=3)
    estimator = DetectorEstimator(DWposeDetector(yolox_nano_path, pose))
    image = np.asarray(Image.open(sorted(val5_dir.glob("*.jpg"))[1]).convert("RGB"))
    detected = estimator.estimate(image)
    assert len(detected) >= 2
    tracked = estimator.estimate_boxes(image, [person.box for person in detected])
    for found, again in zip(detected, tracked, strict=True):
        np.testing.assert_array_equal(again.keypoints, found.keypoints)
        np.testing.assert_array_equal(again.scores, found.scores)
        np.testing.assert_array_equal(again.box, found.box)
    assert estimator.estimate_boxes(image, []) == []
