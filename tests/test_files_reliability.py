"""Issue 13's faults outside the render engines: writers that share a temporary name, FIFOs and
devices given as JSON or model files, loosely typed engine options, a folder named metadata.jsonl."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from render_fakes import blob_factory, blob_image

from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, Smoothing, render_files
from dwpose_ctrl.engines.storage import PARTIAL_SUFFIX
from dwpose_ctrl.openpose import OpenPoseFrame, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def python_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this worktree (a hang fails the test, never the suite)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def second_writer_before_the_rename(monkeypatch, write_again) -> list[str]:
    """Run ``write_again`` (a whole second write of the same file, as a second process would do it)
    just before the first writer renames its temporary file; returns the temporary names renamed."""
    real_replace = os.replace
    renamed: list[str] = []

    def replace(source, destination):
        renamed.append(os.fspath(source))
        if len(renamed) == 1:
            write_again()
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    return renamed


def hidden_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


# issue 13 items 3 and 6 (runs clobbering each other, modes), in the trainer --------------------
def test_two_writers_of_one_checkpoint_keep_it_whole(tmp_path, monkeypatch):
    from training.engine import save_atomic

    path = tmp_path / "last.pth"
    second = {"epoch": 2, "weights": torch.arange(1000.0)}
    renamed = second_writer_before_the_rename(monkeypatch, lambda: save_atomic(second, path))
    save_atomic({"epoch": 1, "weights": torch.zeros(1000)}, path)  # a fixed temporary name: FileNotFoundError
    assert len(renamed) == 2 and renamed[0] != renamed[1]
    assert all(name.endswith(PARTIAL_SUFFIX) and f".{os.getpid()}-" in name for name in renamed)
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 1 and torch.equal(saved["weights"], torch.zeros(1000))
    assert hidden_files(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoints_get_the_mode_a_plain_open_gives(tmp_path, umask):
    from training.engine import save_atomic

    previous = os.umask(umask)
    try:
        save_atomic({"epoch": 1}, tmp_path / "last.pth")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "last.pth").stat().st_mode) == 0o666 & ~umask


def test_two_extractions_of_one_ubody_video_keep_every_frame_whole(tmp_path, monkeypatch):
    import cv2
    from test_training_data import _write_video

    from training.data.ubody import extract_video_frames

    frames = [np.full((48, 64, 3), 40 * number, np.uint8) for number in range(3)]
    video = tmp_path / "clip.mp4"
    _write_video(video, frames)
    out = tmp_path / "frames"
    second_writer_before_the_rename(monkeypatch, lambda: extract_video_frames(video, out, {1}))
    assert extract_video_frames(video, out, {1, 2}) == 2  # the second writer made 000001.png first
    assert sorted(path.name for path in out.iterdir()) == ["000001.png", "000002.png"]
    for number, name in ((0, "000001.png"), (1, "000002.png")):
        decoded = cv2.imread(str(out / name))
        assert decoded.shape == (48, 64, 3)
        assert abs(float(decoded.mean()) - 40 * number) < 4


# issue 13 items 8 and 9 (FIFOs, devices, unbounded reads), for JSON and model files -----------
def test_openpose_json_from_a_fifo_or_a_device_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pose.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    code = f"""
        from dwpose_ctrl.openpose import read_json
        for name in ("pose.json", "zero.json"):
            try:
                read_json({str(tmp_path)!r} + "/" + name)
            except OSError as error:
                print(type(error).__name__, error.strerror)
    """
    result = python_child(code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "NotRegularFileError not a regular file (a FIFO (named pipe)); only regular files are read",
        "NotRegularFileError not a regular file (a character device); only regular files are read",
    ]


def test_a_video_path_that_is_a_fifo_or_a_device_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "clip.mp4")
    os.symlink("/dev/zero", tmp_path / "zero.mp4")
    code = f"""
        from dwpose_ctrl.video import read_video
        for name in ("clip.mp4", "zero.mp4"):
            try:
                read_video({str(tmp_path)!r} + "/" + name)
            except OSError as error:
                print(type(error).__name__, "|", error)
    """
    result = python_child(code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"NotRegularFileError | video file {tmp_path}/clip.mp4 is not a regular file (a FIFO (named pipe)); "
        "only regular files are read",
        f"NotRegularFileError | video file {tmp_path}/zero.mp4 is not a regular file (a character device); "
        "only regular files are read",
    ]


def test_openpose_json_larger_than_the_cap_is_refused_unread(tmp_path, monkeypatch):
    import dwpose_ctrl.openpose as openpose

    path = tmp_path / "pose.json"
    write_json(path, OpenPoseFrame(people=[], width=64, height=48), 64, 48, indent=2)
    assert read_json(path).width == 64
    monkeypatch.setattr(openpose, "MAX_JSON_BYTES", path.stat().st_size - 1)
    with pytest.raises(ValueError, match=rf"pose\.json' is larger than {path.stat().st_size - 1} bytes"):
        read_json(path)


def test_model_files_that_are_fifos_or_devices_are_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "pose.onnx")
    os.symlink("/dev/zero", tmp_path / "zero.pth")
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    fifo, zero = str(tmp_path / "pose.onnx"), str(tmp_path / "zero.pth")
    code = f"""
        from dwpose_ctrl.models.checkpoints import read_weight_file
        from dwpose_ctrl.models.onnx_import import read_onnx_weights
        from dwpose_ctrl.runtime import OnnxBackend
        from dwpose_ctrl.weights import resolve_model
        for call in (lambda: resolve_model({fifo!r}, "pose"), lambda: resolve_model({zero!r}, "pose"),
                     lambda: OnnxBackend({fifo!r}).session, lambda: read_weight_file({zero!r}),
                     lambda: read_onnx_weights({fifo!r})):
            try:
                call()
            except (OSError, ValueError) as error:
                print(type(error).__name__, "|", error)
        import contextlib, io
        from dwpose_ctrl.cli import main
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = main([{str(image)!r}, "-o", {str(tmp_path / "out")!r}, "-q", "--det-model", {fifo!r},
                         "--pose-model", {fifo!r}])
        print(code, "|", errors.getvalue().strip().splitlines()[-1].partition(": ")[2])
    """
    result = python_child(code, timeout=60)
    assert result.returncode == 0, result.stderr
    fifo_kind = "is not a regular file (a FIFO (named pipe)); only regular files are read"
    device_kind = "is not a regular file (a character device); only regular files are read"
    assert result.stdout.splitlines()[:5] == [
        f"ModelFileError | pose model file {fifo} {fifo_kind}; check the path",
        f"ModelFileError | pose model file {zero} {device_kind}; check the path",
        f"NotRegularFileError | ONNX model file {fifo} {fifo_kind}",
        f"NotRegularFileError | weight file {zero} {device_kind}",
        f"NotRegularFileError | ONNX file {fifo} {fifo_kind}",
    ]
    assert (
        result.stdout.splitlines()[-1] == f"2 | error: detector model file {fifo} {fifo_kind}; check the path"
    )


# issue 13 item 18 (non-bool flags, numpy integers as counts), for the engine options ------------
def test_output_flags_must_be_bools(tmp_path):
    for name in ("json", "overlay", "frames", "metadata"):
        with pytest.raises(TypeError, match=rf"^{name} must be True or False, got 'no' \(str\)$"):
            OutputOptions(**{name: "no"})
        with pytest.raises(TypeError, match=rf"^{name} must be True or False, got 1 \(int\)$"):
            OutputOptions(**{name: 1})
    options = OutputOptions(json=np.bool_(True), overlay=np.bool_(False))
    assert options.json is True and options.overlay is False
    with pytest.raises(TypeError, match="video_codec must be a str"):
        OutputOptions(video_codec=None)


def test_job_counts_are_integers_of_any_integer_type(tmp_path):
    for name in ("detect_every", "max_pixels"):
        for bad in (2.0, 1.5, "3", True, 0):
            with pytest.raises(ValueError, match=rf"^{name} must be a positive integer, got {bad!r}$"):
                JobSettings(**{name: bad})
    for bad in (4.0, -1, False):
        with pytest.raises(ValueError, match=rf"^video_prefetch must be an integer >= 0, got {bad!r}$"):
            JobSettings(video_prefetch=bad)
    job = JobSettings(detect_every=np.int64(3), max_pixels=np.uint32(10_000), video_prefetch=np.int8(0))
    assert (job.detect_every, job.max_pixels, job.video_prefetch) == (3, 10_000, 0)
    assert all(type(value) is int for value in (job.detect_every, job.max_pixels, job.video_prefetch))
    with pytest.raises(TypeError, match=r"^outputs must be of type OutputOptions, got"):
        JobSettings(outputs={"json": True})
    with pytest.raises(TypeError, match=r"^smoothing must be of type Smoothing, got"):
        JobSettings(smoothing=0.5)
    assert Smoothing(min_cutoff=np.float32(0.5)).min_cutoff == 0.5
    with pytest.raises(ValueError, match="smoothing needs finite min_cutoff"):
        Smoothing(beta=True)


def test_engine_counts_and_overwrite_are_checked_when_given(tmp_path):
    from dwpose_ctrl.engines.local import LocalEngine

    job = JobSettings()
    for name, bad in (
        ("batch_size", 2.0),
        ("batch_size", 0),
        ("prefetch", 1.5),
        ("loaders", -1),
        ("loaders", True),
    ):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            LocalEngine(blob_factory(), job, None, **{name: bad})
    engine = LocalEngine(
        blob_factory(), job, None, prefetch=np.int64(2), loaders=np.int32(1), batch_size=np.uint8(3)
    )
    assert (engine.prefetch, engine.loaders, engine.batch_size) == (2, 1, 3)
    with pytest.raises(TypeError, match=r"^overwrite must be True or False, got 'no' \(str\)$"):
        render_files([str(tmp_path)], str(tmp_path / "out"), blob_factory, job, overwrite="no")


# issue 13 items 5 and 11 (a name clash ends the whole run), for the metadata file ---------------
def test_an_input_folder_named_metadata_jsonl_is_one_failed_item(tmp_path):
    image = blob_image(96, 128, [(10, 10, 30, 60)])
    (tmp_path / "in" / "metadata.jsonl").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "in" / "metadata.jsonl" / "a.jpg")
    Image.fromarray(image).save(tmp_path / "in" / "b.jpg")
    job = JobSettings(render=RenderSettings(detect_resolution=128), outputs=OutputOptions(metadata=True))
    report = render_files([str(tmp_path / "in")], str(tmp_path / "out"), blob_factory, job)
    outcome = {Path(result.location).relative_to(tmp_path).as_posix(): result for result in report.results}
    assert outcome["in/b.jpg"].status == "done"
    assert outcome["in/metadata.jsonl/a.jpg"].status == "failed"
    assert outcome["in/metadata.jsonl/a.jpg"].reason.startswith(
        "its outputs would be written inside metadata.jsonl, the file --metadata writes"
    )
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert rows == [{"file_name": "images/b.jpg", "conditioning_image_file_name": "b.png", "text": ""}]
    assert report.exit_code == 1


# issue 13 items 3 and 7 (outputs published whole or not at all), for the converter's files ------
def test_a_failed_export_leaves_no_half_written_model(tmp_path, monkeypatch):
    import safetensors.torch

    from dwpose_ctrl.models import build_rtmpose
    from dwpose_ctrl.models import export as export_module

    model = build_rtmpose("t", (64, 64))

    def write_half(state_or_model, *args, **kwargs):  # a full disk or a kill while writing
        Path(args[1] if len(args) > 1 else args[0]).write_bytes(b"\0" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(torch.onnx, "export", write_half)
    with pytest.raises(OSError, match="disk full"):
        export_module.export_onnx(model, tmp_path / "pose.onnx")
    monkeypatch.setattr(safetensors.torch, "save_file", write_half)
    with pytest.raises(OSError, match="disk full"):
        export_module.export_safetensors(model, tmp_path / "pose.safetensors")
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_two_benchmarks_filling_one_model_cache_do_not_clobber_each_other(tmp_path, monkeypatch):
    import benchmarks.make_models as make_models
    from benchmarks.make_models import RTMPOSE_S_256, ensure_model
    from dwpose_ctrl.models import build_rtmpose
    from dwpose_ctrl.models import export as export_module

    monkeypatch.setattr(make_models, "build_random", lambda model: build_rtmpose("t", model.input_size))

    def export(model, args, path, **kwargs):  # the bytes do not matter here, only who writes where
        Path(path).write_bytes(b"an exported model")

    monkeypatch.setattr(torch.onnx, "export", export)
    monkeypatch.setattr(export_module, "_declare_static_output_dims", lambda *args: None)
    renamed = second_writer_before_the_rename(
        monkeypatch, lambda: ensure_model(RTMPOSE_S_256, tmp_path, log=str)
    )
    path = ensure_model(RTMPOSE_S_256, tmp_path, log=str)  # a fixed ".partial.onnx": FileNotFoundError
    assert len(renamed) == 2 and renamed[0] != renamed[1]
    assert path.read_bytes() == b"an exported model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
