"""``dwpose-render``: flags, the real detector end to end, signals, kill-and-resume, exit codes."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from render_fakes import blob_factory, blob_image

from dwpose_ctrl.cli import build_parser, main
from dwpose_ctrl.engines.storage import PARTIAL_SUFFIX

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def save(path: Path, seed: int = 0, size=(96, 128)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(*size, [(10 + seed % 9 * 7, 10, 30, 60), (80, 20, 20, 50)], seed=seed)).save(
        path
    )
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


SMALL = ["--detect-resolution", "128", "--image-resolution", "128"]


# help and flags -------------------------------------------------------------------------------
def test_help_is_complete_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--json", "--overlay", "--frames", "--metadata", "--video-codec", "--overwrite",
        "--detect-resolution", "--image-resolution", "--no-body", "--no-hand", "--no-face", "--foot",
        "--stick-scaling", "--det-model", "--pose-model", "--mode", "--backend", "--device",
        "--detect-every", "--smooth", "--engine", "--ray-address", "--prefetch", "--quiet", "--max-pixels",
        "--style", "--draw-at-output-resolution",
    ):  # fmt: skip
        assert flag in text, flag
    assert "examples:" in text and "dwpose-render photos/ -o maps/" in text and "s3://" in text


def test_every_detector_option_has_a_flag_that_reaches_the_detector():
    from dataclasses import fields

    from dwpose_ctrl.cli import detector_spec_from_args
    from dwpose_ctrl.detector import DWposeDetector

    parameters = set(inspect.signature(DWposeDetector.__init__).parameters) - {"self"}
    flags = {action.dest for action in build_parser()._actions}
    renamed = {"local_dir": "models_dir"}
    assert {renamed.get(name, name) for name in parameters} <= flags
    spec = detector_spec_from_args(build_parser().parse_args(["x.jpg"]))
    passed = {field.name for field in fields(spec)} - {"options"} | set(spec.options)
    assert passed == parameters


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["x.jpg", "--detect-every", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["x.jpg", "--image-resolution", "10"])
    assert "resolution must be >= 64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["x.jpg", "--style", "animateanyone"])
    assert exit_info.value.code == 2
    assert "annotator" in capsys.readouterr().err


def test_style_flags_reach_the_render_options():
    from dwpose_ctrl.cli import job_from_args

    default = job_from_args(build_parser().parse_args(["x.jpg"])).render.render_options
    assert (default.style, default.draw_at_output_resolution) == ("annotator", False)
    args = build_parser().parse_args(["x.jpg", "--style", "mimicmotion", "--draw-at-output-resolution"])
    options = job_from_args(args).render.render_options
    assert (options.style, options.draw_at_output_resolution) == ("mimicmotion", True)


def test_unusable_model_files_stop_before_any_item(tmp_path, capsys, yolox_nano_path):
    save(tmp_path / "a.jpg")
    garbage = tmp_path / "pose.onnx"
    garbage.write_bytes(b"not onnx")
    base = [str(tmp_path / "a.jpg"), "-o", str(tmp_path / "out"), "-q", "--det-model", str(yolox_nano_path)]
    assert main([*base, "--pose-model", str(tmp_path / "missing.onnx")]) == 2
    assert main([*base, "--pose-model", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert "missing.onnx does not exist" in err and "pose.onnx" in err
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    save(tmp_path / "a.jpg")
    (tmp_path / "out").write_text("a file")
    assert main([str(tmp_path / "a.jpg"), "-o", str(tmp_path / "out"), "-q"], blob_factory) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_storage_options_are_parsed_as_json_when_they_are_json():
    args = build_parser().parse_args(
        ["s3://b/in", "--storage-option", "anon=true", "--storage-option", "endpoint_url=http://127.0.0.1:9"]
    )
    assert dict(args.storage_option) == {"anon": True, "endpoint_url": "http://127.0.0.1:9"}


# the real detector ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pose_model(tmp_path_factory) -> Path:
    from onnx_graphs import pose_like

    return pose_like(
        tmp_path_factory.mktemp("models") / "pose.onnx", input_size=(64, 48), dynamic=True, seed=3
    )


REAL_CASES = {
    "defaults": ([], {}, {}),
    "drawing": (
        ["--no-hand", "--foot", "--stick-scaling", "--detect-resolution", "256", "--image-resolution", "384"],
        {},
        {"detect_resolution": 256, "image_resolution": 384, "include_hand": False, "include_foot": True,
         "stick_scaling": True},
    ),
    "musepose": (["--style", "musepose", "--no-face"], {}, {"style": "musepose", "include_face": False}),
    "mimicmotion-sharp": (
        ["--style", "mimicmotion", "--draw-at-output-resolution", "--image-resolution", "768"],
        {},
        {"style": "mimicmotion", "draw_at_output_resolution": True, "image_resolution": 768},
    ),
    "detector": (
        ["--min-box-size", "120", "--max-persons", "3", "--score-threshold", "0.4", "--mode", "reference",
         "--keypoint-threshold", "0.1", "--nms-threshold", "0.6"],
        {"min_box_size": 120, "max_persons": 3, "score_threshold": 0.4, "mode": "reference",
         "keypoint_threshold": 0.1, "nms_threshold": 0.6},
        {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REAL_CASES))
def test_real_detector_outputs_equal_the_detector_call(
    tmp_path, yolox_nano_path, val5_dir, portraits_dir, pose_model, case
):
    from dwpose_ctrl.detector import DWposeDetector

    flags, detector_options, call_options = REAL_CASES[case]
    images = sorted(portraits_dir.iterdir()) + sorted(val5_dir.glob("*.jpg"))[:2]
    out = tmp_path / "out"
    argv = [
        *map(str, images),
        "-o",
        str(out),
        "--det-model",
        str(yolox_nano_path),
        "--pose-model",
        str(pose_model),
    ]
    assert main([*argv, "--json", "--overlay", "-q", *flags]) == 0
    detector = DWposeDetector(yolox_nano_path, pose_model, **detector_options)
    necks_checked = 0
    for image_path in images:
        stem = out / image_path.stem
        expected = detector(str(image_path), output_type="np", **call_options)
        np.testing.assert_array_equal(np.asarray(Image.open(f"{stem}.png")), expected)
        overlay = detector(str(image_path), output_type="np", overlay=True, **call_options)
        np.testing.assert_array_equal(np.asarray(Image.open(f"{stem}.overlay.png")), overlay)
        # JSON: the same persons, in input pixels (estimate() scales them back from detection pixels)
        written = json.loads(Path(f"{stem}.json").read_text())
        persons = detector.estimate(
            str(image_path), detect_resolution=call_options.get("detect_resolution", 512)
        )
        assert len(written["people"]) == len(persons)
        with Image.open(image_path) as opened:
            assert (written["canvas_width"], written["canvas_height"]) == opened.size
        for entry, person in zip(written["people"], persons, strict=True):
            neck = (person.keypoints[5] + person.keypoints[6]) / 2
            x, y, c = entry["pose_keypoints_2d"][3:6]
            if c:
                np.testing.assert_allclose([x, y], neck, atol=1e-6)
                necks_checked += 1
    assert necks_checked > 0


# signals and kills ----------------------------------------------------------------------------
def spawn(args: list[str], delay: float = 0.05) -> subprocess.Popen:
    """``dwpose-render`` in a subprocess, with a slow fake detector (``delay`` s per image)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from render_fakes import slow_factory; from dwpose_ctrl.cli import main;"
        f"sys.exit(main(sys.argv[2:], estimator_factory=lambda: slow_factory({delay})))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(TESTS), *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )


def wait_for_maps(out: Path, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and len(list(out.rglob("*.overlay.png"))) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"dwpose-render ended before it could be stopped: {process.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("dwpose-render wrote no output in time")


def assert_complete(out: Path) -> None:
    """Every file under its final name is whole (PNG decodes fully, JSON parses)."""
    for path in out.rglob("*"):
        if path.name.endswith(PARTIAL_SUFFIX) or not path.is_file():
            continue
        if path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for index in range(40):
        save(folder / f"set{index % 3}" / f"photo {index:02d}.jpg", seed=index, size=(240, 320))
    return folder


@pytest.fixture(scope="module")
def clean_run(photo_folder, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("clean") / "out"
    assert (
        main([str(photo_folder), "-o", str(out), "--json", "--overlay", "-q"], estimator_factory=blob_factory)
        == 0
    )
    return tree(out)


def test_sigkill_mid_run_then_resume_is_identical_to_an_uninterrupted_run(tmp_path, photo_folder, clean_run):
    out = tmp_path / "out"
    args = [str(photo_folder), "-o", str(out), "--json", "--overlay", "-q"]
    process = spawn(args)
    wait_for_maps(out, 3, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = tree(out)
    assert 0 < len([name for name in killed if name.endswith(".overlay.png")]) < 40
    assert_complete(out)
    resumed = spawn(args, delay=0.0)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    assert tree(out) == clean_run


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_after_the_current_item(tmp_path, photo_folder, clean_run, signum):
    out = tmp_path / "out"
    args = [str(photo_folder), "-o", str(out), "--json", "--overlay"]
    process = spawn(args)
    wait_for_maps(out, 2, process)
    process.send_signal(signum)
    assert process.wait(timeout=60) == 130
    stderr = process.stderr.read()
    assert "stopping after the current item" in stderr and "interrupted" in stderr
    assert not list(out.rglob(f"*{PARTIAL_SUFFIX}"))
    assert_complete(out)
    stopped = tree(out)
    assert len(stopped) < len(clean_run)
    # every item is either complete (map, JSON and overlay) or absent
    stems = {name.rsplit(".", 2 if name.endswith(".overlay.png") else 1)[0] for name in stopped}
    assert len(stopped) == 3 * len(stems)
    assert main([*args, "-q"], estimator_factory=blob_factory) == 0
    assert tree(out) == clean_run


# exit codes and output ------------------------------------------------------------------------
def test_failures_give_exit_1_and_a_summary(tmp_path, capsys):
    save(tmp_path / "in" / "good.jpg")
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG broken")
    report = tmp_path / "report.json"
    code = main(
        [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--report", str(report)], blob_factory
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"FAILED {tmp_path / 'in' / 'bad.png'}: " in err
    assert "done 1, skipped 0, failed 1" in err
    data = json.loads(report.read_text())
    assert data["counts"]["failed"] == 1 and len(data["items"]) == 2


def test_quiet_prints_nothing_on_success_and_progress_otherwise(tmp_path, capsys):
    save(tmp_path / "in" / "a.jpg")
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "q"), "-q", *SMALL], blob_factory) == 0
    assert capsys.readouterr().err == ""
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "v"), *SMALL], blob_factory) == 0
    err = capsys.readouterr().err
    assert "img/s" in err and "done 1, skipped 0, failed 0" in err


def test_video_through_the_cli(tmp_path):
    from fractions import Fraction

    from dwpose_ctrl.video import VideoWriter, read_video

    source = tmp_path / "in" / "clip.mp4"
    source.parent.mkdir()
    writer = VideoWriter(str(source), "libx264", "yuv420p", 128, 96, Fraction(1, 30), Fraction(30))
    for index in range(6):
        writer.write(blob_image(96, 128, [(5 + 4 * index, 10, 20, 50)], seed=index), index)
    writer.close()
    argv = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", *SMALL, "--json", "--frames"]
    assert main([*argv, "--video-codec", "png", "--detect-every", "2", "--smooth"], blob_factory) == 0
    info, frames = read_video(str(tmp_path / "out" / "clip.mov"))
    assert len(frames) == 6 and info.average_rate == 30
    assert sorted(p.name for p in (tmp_path / "out" / "clip").iterdir()) == sorted(
        [f"{i:06d}.json" for i in range(6)] + [f"{i:06d}.png" for i in range(6)]
    )


def test_real_detector_video_keeps_person_ids(tmp_path, yolox_nano_path, val5_dir, pose_model):
    from fractions import Fraction

    from dwpose_ctrl.video import VideoWriter, read_video

    photo = np.asarray(Image.open(sorted(val5_dir.glob("*.jpg"))[1]).convert("RGB"))[:448, :640]
    source = tmp_path / "walk.mp4"
    writer = VideoWriter(
        str(source), "libx264rgb", "rgb24", 576, 448, Fraction(1, 24), Fraction(24), "matroska"
    )
    for index in range(5):  # the photo sliding 3 px per frame
        writer.write(np.ascontiguousarray(photo[:, 3 * index : 3 * index + 576]), index)
    writer.close()
    out = tmp_path / "out"
    argv = [
        str(source),
        "-o",
        str(out),
        "-q",
        "--det-model",
        str(yolox_nano_path),
        "--pose-model",
        str(pose_model),
    ]
    assert main([*argv, "--json", "--video-codec", "ffv1"]) == 0
    info, frames = read_video(str(out / "walk.mkv"))
    assert len(frames) == 5 and info.average_rate == 24
    ids = [
        sorted(p["person_id"][0] for p in json.loads((out / "walk" / f"{i:06d}.json").read_text())["people"])
        for i in range(5)
    ]
    # most persons keep their frame-0 ID in every frame (a tracker handing out fresh IDs fails this)
    kept = set(ids[0]).intersection(*ids[1:])
    assert len(ids[0]) >= 10 and len(kept) >= 0.75 * len(ids[0])
