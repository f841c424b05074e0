"""Videos that are broken, huge or re-rendered: outputs published whole, limits per frame, clear reasons.

Every input here is synthesised with PyAV or Pillow and is a few kilobytes (the huge GIFs only
declare a huge frame in their header).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from render_fakes import BlobEstimator, blob_factory, blob_image

from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, Storage, render_files
from dwpose_ctrl.engines.storage import PARTIAL_SUFFIX
from dwpose_ctrl.video import VideoWriter, read_video

NATIVE = RenderSettings(detect_resolution=None, image_resolution=None)
LOSSLESS = OutputOptions(json=True, frames=True, video_codec="ffv1")
HERE = Path(__file__).resolve().parent


def frames(count: int, height: int = 48, width: int = 64, start: int = 0) -> list[np.ndarray]:
    return [blob_image(height, width, [(4 + t, 8, 12, 24)], seed=t) for t in range(start, start + count)]


def write_lossless(path: Path, images: list[np.ndarray]) -> Path:
    height, width = images[0].shape[:2]
    writer = VideoWriter(str(path), "ffv1", "bgr0", width, height, Fraction(1, 25), Fraction(25))
    for index, image in enumerate(images):
        writer.write(image, index)
    writer.close()
    return path


def transport_stream(images: list[np.ndarray], first_pts: int) -> bytes:
    """An MPEG-TS of H.264 frames; two such streams concatenated make a valid file whose frame
    size changes where the second begins (what ``cat a.ts b.ts`` gives)."""
    buffer = io.BytesIO()
    container = av.open(buffer, "w", format="mpegts")
    height, width = images[0].shape[:2]
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for offset, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = first_pts + offset, Fraction(1, 25)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return buffer.getvalue()


def gif_declaring(width: int, height: int, count: int = 3) -> bytes:
    """A GIF of tiny frames whose header declares a ``width`` x ``height`` screen (what FFmpeg decodes)."""
    images = [Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)) for i in range(count)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=100)
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def render(source: Path, out: Path, overwrite: bool = False, estimator_factory=blob_factory, **job):
    settings = JobSettings(**{"render": NATIVE, "outputs": LOSSLESS, **job})
    report = render_files([str(source)], str(out), estimator_factory, settings, overwrite=overwrite)
    (result,) = report.results
    return result


def files_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# item 7: a video's outputs are published together or not at all ---------------------------------
def test_overwrite_with_a_shorter_video_leaves_no_frame_of_the_old_one(tmp_path):
    source = write_lossless(tmp_path / "clip.mkv", frames(6))
    assert render(source, tmp_path / "out").frames == 6
    write_lossless(source, frames(3))
    assert render(source, tmp_path / "out", overwrite=True).frames == 3
    names = [f"clip/{i:06d}.{ext}" for i in range(3) for ext in ("json", "png")]
    assert files_below(tmp_path / "out") == sorted(
        ["clip.json", "clip.mkv", *names]
    )  # clip.json: the sequence
    assert len(json.loads((tmp_path / "out" / "clip.json").read_text())) == 3


class FailsAtFrame(BlobEstimator):
    def __init__(self, bad: int):
        super().__init__()
        self.bad = bad

    def estimate(self, image, scale=1.0):
        if self.calls == self.bad:
            raise ValueError(f"the network failed on frame {self.bad}")
        return super().estimate(image, scale)


def test_a_failed_video_publishes_nothing_and_keeps_the_previous_outputs(tmp_path):
    source = write_lossless(tmp_path / "clip.mkv", frames(4))
    out = tmp_path / "out"
    assert render(source, out).status == "done"
    before = {name: (out / name).read_bytes() for name in files_below(out)}
    write_lossless(source, frames(8, start=10))
    result = render(source, out, overwrite=True, estimator_factory=lambda: FailsAtFrame(5), video_prefetch=0)
    assert (result.status, result.reason) == ("failed", "the network failed on frame 5")
    assert {name: (out / name).read_bytes() for name in files_below(out)} == before
    fresh = render(source, tmp_path / "fresh", estimator_factory=lambda: FailsAtFrame(5), video_prefetch=0)
    assert fresh.status == "failed" and files_below(tmp_path / "fresh") == []
    assert not any(PARTIAL_SUFFIX in p.name for p in tmp_path.rglob("*"))


def test_a_killed_runs_staged_frames_folder_is_removed_by_the_next_run(tmp_path):
    stale = tmp_path / "out" / f".clip.abc{PARTIAL_SUFFIX}"
    stale.mkdir(parents=True)
    (stale / "000000.json").write_text("{}")
    live = tmp_path / "out" / f".clip.1-0123abcd{PARTIAL_SUFFIX}"  # PID 1 is alive: a nested run's
    live.mkdir()
    assert Storage().remove_stale_partials(str(tmp_path / "out")) == 1
    assert not stale.exists() and live.is_dir()


# item 10: the pixel limit applies to every frame of videos and GIFs -------------------------------
def test_a_gif_too_large_for_ffmpeg_is_refused_with_its_reason(tmp_path):
    source = tmp_path / "huge.gif"
    source.write_bytes(gif_declaring(30000, 30000))
    result = render(source, tmp_path / "out")
    assert result.status == "failed"
    assert result.reason.startswith("the video frame has no valid size (FFmpeg reads 0x0")


def test_a_gif_over_the_pixel_limit_is_refused_before_decoding_in_bounded_memory(tmp_path):
    source = tmp_path / "big.gif"
    source.write_bytes(gif_declaring(16000, 16000))
    limit = 2560 << 20  # decoding one 16000x16000 frame to RGB needs more than 1 GB on top
    code = (
        "import json, resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
        "from dwpose_ctrl.engines import JobSettings, render_files\n"
        "from render_fakes import blob_factory\n"
        f"report = render_files([{str(source)!r}], {str(tmp_path / 'out')!r}, blob_factory, JobSettings())\n"
        "print(json.dumps([report.results[0].status, report.results[0].reason]))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    status, reason = json.loads(done.stdout.splitlines()[-1])
    assert status == "failed"
    assert reason.startswith("decompression bomb: the video frame is 16000x16000 = 256000000 pixels")


def test_every_frame_is_held_to_the_limit(tmp_path):
    source = tmp_path / "grows.mkv"  # the container is found by its content, not its name
    source.write_bytes(transport_stream(frames(3), 0) + transport_stream(frames(3, 96, 128), 50))
    result = render(source, tmp_path / "out", max_pixels=64 * 48)
    assert result.status == "failed"
    assert result.reason == (
        "decompression bomb: frame 3 is 128x96 = 12288 pixels, more than --max-pixels 3072; "
        "raise the limit only for files you trust"
    )


# item 16: timestamps, size changes and truncated files named for what they are -------------------
def test_timestamps_going_backwards_are_named_and_the_temp_file_is_not_blamed(tmp_path):
    source = tmp_path / "back.mkv"
    container = av.open(str(source), "w", format="matroska")
    stream = container.add_stream("ffv1", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "bgr0"
    stream.time_base = Fraction(1, 25)
    # decoding order 0..5 (increasing dts), presentation times jump back after the fourth frame
    for dts, (image, pts) in enumerate(zip(frames(6), [10, 11, 12, 20, 13, 14], strict=True)):
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            packet.dts, packet.pts = dts, pts
            container.mux(packet)
    container.close()
    result = render(source, tmp_path / "out")
    assert result.status == "failed"
    assert result.reason.startswith(
        "the input's timestamps do not increase: frame 4 is at 0.520 s, after a frame at 0.800 s"
    )
    assert files_below(tmp_path / "out") == []


def test_a_frame_size_change_at_native_size_scales_to_the_first_size_and_warns(tmp_path):
    source = tmp_path / "sizes.mkv"
    source.write_bytes(transport_stream(frames(3), 0) + transport_stream(frames(3, 32, 40), 50))
    result = render(source, tmp_path / "out")
    assert (result.status, result.frames) == ("done", 6)
    assert result.reason == (
        "the frame size changes mid-stream (frame 3 is 40x32); such frames were scaled to the first "
        "frame's 64x48"
    )
    info, decoded = read_video(str(tmp_path / "out" / "sizes.mkv"))
    assert (info.width, info.height, len(decoded)) == (64, 48, 6)
    canvases = [json.loads((tmp_path / "out" / "sizes" / f"{i:06d}.json").read_text()) for i in range(6)]
    assert {(c["canvas_width"], c["canvas_height"]) for c in canvases} == {(64, 48)}


def test_a_truncated_video_is_reported_as_partial(tmp_path):
    whole = write_lossless(tmp_path / "whole.mkv", frames(40))
    source = tmp_path / "cut.mkv"
    source.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = render(source, tmp_path / "out")
    assert result.status == "done" and 10 < result.frames < 30
    assert result.reason == (
        f"partial video: the {result.frames} decoded frames end at {result.frames / 25:.3f} s, the header "
        "says it lasts until 1.600 s (the file is truncated or damaged)"
    )
    assert render(whole, tmp_path / "whole_out").reason == ""


def test_a_truncated_video_with_a_frame_count_in_its_header_is_reported_as_partial(tmp_path):
    whole = tmp_path / "whole.mov"
    container = av.open(str(whole), "w", format="mov", options={"movflags": "faststart"})
    stream = container.add_stream("png", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
    for index, image in enumerate(frames(40)):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, 25)
        for packet in stream.encode(frame):
            container.mux(packet)
    container.close()
    source = tmp_path / "cut.mov"
    source.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = render(source, tmp_path / "out")
    assert result.status == "done" and 10 < result.frames < 30
    expected = f"partial video: {result.frames} of the 40 frames its header announces were decoded"
    assert result.reason == expected


def test_a_whole_gif_with_a_long_last_frame_is_not_partial(tmp_path):
    images = [Image.fromarray(image) for image in frames(4)]
    source = tmp_path / "anim.gif"
    images[0].save(source, save_all=True, append_images=images[1:], duration=[100, 50, 100, 900], loop=0)
    result = render(source, tmp_path / "out")
    assert (result.status, result.frames, result.reason) == ("done", 4, "")


def test_the_cli_prints_the_warning_of_a_partial_video(tmp_path, capsys):
    from dwpose_ctrl.cli import main

    whole = write_lossless(tmp_path / "whole.mkv", frames(40))
    source = tmp_path / "cut.mkv"
    source.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main([str(source), "-o", str(tmp_path / "out"), "-q"], estimator_factory=blob_factory) == 0
    err = capsys.readouterr().err
    assert f"WARNING {source}: partial video: the " in err
    assert "dwpose-render: done 1, skipped 0, failed 0 (1 done with a warning)" in err


# the same class for images: an item's files are all encoded before any is replaced ---------------
def test_an_image_whose_map_cannot_be_encoded_keeps_its_previous_json(tmp_path, monkeypatch):
    import dwpose_ctrl.engines.item as item_module

    source = tmp_path / "a.png"
    Image.fromarray(blob_image(48, 64, [(4, 4, 12, 30)])).save(source)
    job = JobSettings(render=NATIVE, outputs=OutputOptions(json=True))
    assert render_files([str(source)], str(tmp_path / "out"), blob_factory, job).counts["done"] == 1
    before = (tmp_path / "out" / "a.json").read_bytes()
    Image.fromarray(blob_image(48, 64, [(30, 10, 12, 30)])).save(source)

    def failing_png(image):
        raise ValueError("OpenCV could not encode the map")

    monkeypatch.setattr(item_module, "encode_png", failing_png)
    report = render_files([str(source)], str(tmp_path / "out"), blob_factory, job, overwrite=True)
    assert [r.reason for r in report.failures] == ["OpenCV could not encode the map"]
    assert (tmp_path / "out" / "a.json").read_bytes() == before


def test_an_output_video_that_cannot_be_created_does_not_blame_the_input(tmp_path, monkeypatch):
    import dwpose_ctrl.engines.item as item_module

    def refused(path, *args, **kwargs):
        raise av.error.PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(item_module, "VideoWriter", refused)
    result = render(write_lossless(tmp_path / "clip.mkv", frames(2)), tmp_path / "out")
    assert (result.status, result.reason) == ("failed", "encoding the output video failed: Permission denied")


def test_training_frame_extraction_holds_videos_to_the_pixel_limit(tmp_path):
    from training.data.ubody import extract_video_frames

    source = tmp_path / "big.gif"
    source.write_bytes(gif_declaring(400, 300))
    with pytest.raises(ValueError, match=r"big.gif: the video frame is 400x300 = 120000 pixels, more than"):
        extract_video_frames(source, tmp_path / "frames", max_pixels=100_000)
    assert not (tmp_path / "frames").exists() or not any((tmp_path / "frames").iterdir())
    assert extract_video_frames(write_lossless(tmp_path / "ok.mkv", frames(2)), tmp_path / "ok") == 2


def test_the_published_frames_folder_gets_the_mode_of_a_plain_mkdir(tmp_path):
    previous = os.umask(0o027)
    try:
        source = write_lossless(tmp_path / "clip.mkv", frames(2))
        assert render(source, tmp_path / "out").status == "done"
    finally:
        os.umask(previous)
    assert (tmp_path / "out" / "clip").stat().st_mode & 0o777 == 0o750
