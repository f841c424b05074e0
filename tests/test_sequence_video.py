"""Videos as whole clips: dwpose-render --align-to / --smooth / --fill-gaps and the sequence JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from render_fakes import BlobEstimator, blob_factory, blob_image
from test_video import moving_frames, write_video

from dwpose_ctrl.cli import build_parser, job_from_args, main
from dwpose_ctrl.engines.pose import RenderSettings
from dwpose_ctrl.openpose import frame_to_json, persons_to_openpose
from dwpose_ctrl.sequence import read_sequence
from dwpose_ctrl.video import read_video

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--detect-resolution", "128", "--image-resolution", "128", "-q"]


def test_smooth_means_offline_and_one_euro_stays_available():
    args = build_parser().parse_args(["a.mp4", "--smooth"])
    job = job_from_args(args)
    assert job.smoothing is None and job.sequence.smooth and job.sequence.align_to is None
    args = build_parser().parse_args(
        ["a.mp4", "--smooth", "--smooth-method", "one-euro", "--smooth-beta", "0.2"]
    )
    job = job_from_args(args)
    assert job.sequence is None and job.smoothing.beta == 0.2
    args = build_parser().parse_args(
        ["a.mp4", "--align-to", "r.png", "--align-method", "linear", "--fill-gaps", "3"]
    )
    job = job_from_args(args)
    assert (job.sequence.align_to, job.sequence.align_method, job.sequence.fill_gaps) == (
        "r.png",
        "linear",
        3,
    )
    assert not job.sequence.smooth
    assert job_from_args(build_parser().parse_args(["a.mp4"])).sequence is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--smooth-radius", "3"], "--smooth-radius: only used with --smooth"),
        (["--smooth", "--smooth-beta", "0.1"], "--smooth-beta: only used with --smooth-method one-euro"),
        (
            ["--smooth", "--smooth-method", "one-euro", "--smooth-radius", "3"],
            "only used with --smooth-method offline",
        ),
        (["--align-method", "linear"], "--align-method: only used with --align-to"),
        (["--smooth", "--smooth-method", "one-euro", "--smooth-min-cutoff", "0"], "--smooth-min-cutoff"),
    ],
)
def test_options_that_would_do_nothing_are_refused(tmp_path, capsys, options, message):
    video = write_video(tmp_path / "clip.mp4", moving_frames(2))
    assert main([str(video), "-o", str(tmp_path / "out"), *options, "-q"], blob_factory) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_alignment_arguments_exit_2(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", moving_frames(2))
    assert (
        main([str(video), "-o", str(tmp_path / "out"), "--align-to", str(tmp_path / "nope.png"), "-q"]) == 2
    )
    assert "error: --align-to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([str(video), "--align-method", "affine"])
    assert exit_info.value.code == 2


def test_streamed_video_json_also_writes_the_sequence_file(tmp_path):
    video = write_video(tmp_path / "clip.mp4", moving_frames(5))
    assert main([str(video), "-o", str(tmp_path / "out"), "--json", *SMALL], blob_factory) == 0
    sequence = json.loads((tmp_path / "out" / "clip.json").read_text())
    frames = [json.loads((tmp_path / "out" / "clip" / f"{i:06d}.json").read_text()) for i in range(5)]
    assert sequence == frames
    assert [p["person_id"] for p in sequence[0]["people"]] == [[0], [1]]


@pytest.mark.parametrize("style", ["annotator", "musepose"])
def test_two_passes_with_nothing_to_change_give_the_streamed_outputs(tmp_path, style):
    video = write_video(tmp_path / "clip.mp4", moving_frames(6))
    common = [
        str(video),
        "--json",
        "--frames",
        "--overlay",
        "--video-codec",
        "ffv1",
        "--style",
        style,
        *SMALL,
    ]
    assert main([*common, "-o", str(tmp_path / "streamed")], blob_factory) == 0
    # every keypoint of the fake estimator is visible in every frame: no gap to fill
    assert main([*common, "-o", str(tmp_path / "two_passes"), "--fill-gaps", "3"], blob_factory) == 0
    for name in ("clip.mkv", "clip.overlay.mkv"):
        streamed = read_video(tmp_path / "streamed" / name)[1]
        two_passes = read_video(tmp_path / "two_passes" / name)[1]
        assert len(streamed) == len(two_passes) == 6
        for first, second in zip(streamed, two_passes, strict=True):
            np.testing.assert_array_equal(first.image, second.image)
            assert first.pts == second.pts
    for relative in ["clip.json"] + [f"clip/{i:06d}.json" for i in range(6)]:
        streamed_json = json.loads((tmp_path / "streamed" / relative).read_text())
        assert json.loads((tmp_path / "two_passes" / relative).read_text()) == streamed_json


def test_aligned_smoothed_video_end_to_end_with_a_fake_estimator(tmp_path):
    video = write_video(tmp_path / "clip.mp4", moving_frames(6))
    reference = blob_image(200, 150, [(40, 20, 60, 160)])
    Image.fromarray(reference).save(tmp_path / "ref.png")
    argv = [str(video), "-o", str(tmp_path / "out"), "--align-to", str(tmp_path / "ref.png")]
    argv += ["--smooth", "--fill-gaps", "2", "--json", "--frames", "--video-codec", "ffv1", *SMALL]
    assert main(argv, blob_factory) == 0

    settings = RenderSettings(detect_resolution=128, image_resolution=128)
    height, width = settings.output_size(200, 150)
    info, decoded = read_video(tmp_path / "out" / "clip.mkv")
    assert len(decoded) == 6 and (info.width, info.height) == (width, height)
    for frame in decoded:
        png = np.asarray(Image.open(tmp_path / "out" / "clip" / f"{frame.index:06d}.png").convert("RGB"))
        np.testing.assert_array_equal(png, frame.image)

    sequence_json = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert len(sequence_json) == 6
    assert all((f["canvas_width"], f["canvas_height"]) == (150, 200) for f in sequence_json)
    for index, entry in enumerate(sequence_json):
        assert json.loads((tmp_path / "out" / "clip" / f"{index:06d}.json").read_text()) == entry
    assert [p["person_id"] for p in sequence_json[0]["people"]] == [[0], [1]]

    # the anchor (the largest person of frame 0) has its neck on the reference's neck
    detection = settings.detection_image(reference)
    persons = BlobEstimator().estimate(detection)
    reference_json = frame_to_json(
        persons_to_openpose(persons, detection.shape[1], detection.shape[0]), 150, 200
    )
    reference_neck = reference_json["people"][0]["pose_keypoints_2d"][3:5]
    necks = [person["pose_keypoints_2d"][3:5] for person in sequence_json[0]["people"]]
    assert min(np.linalg.norm(np.subtract(neck, reference_neck)) for neck in necks) < 1e-9

    unaligned = tmp_path / "plain"
    assert main([str(video), "-o", str(unaligned), "--json", *SMALL], blob_factory) == 0
    plain = read_sequence(unaligned / "clip.json")
    aligned = read_sequence(tmp_path / "out" / "clip.json")
    for before, after in zip(plain.frames, aligned.frames, strict=True):
        assert after.track_ids == before.track_ids
        for person_before, person_after in zip(before.pose.people, after.pose.people, strict=True):
            np.testing.assert_array_equal(person_after.body[:, 2], person_before.body[:, 2])


@pytest.mark.slow
def test_cli_aligns_a_driving_clip_to_a_reference_photo_with_onnx_models(tmp_path):
    from tiny_pipelines import save_posing_detector

    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.retarget import SEGMENTS

    det_model, pose_model = save_posing_detector(tmp_path / "models")
    frames = [blob_image(96, 96, [(20 + 4 * t, 10, 40, 70)], seed=t) for t in range(8)]
    video = write_video(tmp_path / "driving.mp4", frames)
    reference = ROOT / "examples" / "images" / "grace_hopper.jpg"
    command = [
        sys.executable, "-m", "dwpose_ctrl.cli", str(video), "-o", str(tmp_path / "out"),
        "--align-to", str(reference), "--smooth", "--style", "mimicmotion", "--json",
        "--det-model", str(det_model), "--pose-model", str(pose_model), *SMALL,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr

    photo = np.asarray(Image.open(reference).convert("RGB"))
    settings = RenderSettings(detect_resolution=128, image_resolution=128)
    info, decoded = read_video(tmp_path / "out" / "driving.mp4")
    assert len(decoded) == 8
    assert (info.height, info.width) == settings.output_size(*photo.shape[:2])
    assert all(frame.image.max() > 0 for frame in decoded)

    detector = DWposeDetector(det_model, pose_model)
    detection = settings.detection_image(photo)
    reference_frame = detector.to_openpose(
        detector.estimate(detection), detection.shape[1], detection.shape[0]
    )
    sequence = read_sequence(tmp_path / "out" / "driving.json")
    assert len(sequence) == 8
    reference_body = reference_frame.people[0].body[:, :2] * (detection.shape[1], detection.shape[0])
    for frame in sequence.frames:
        (person,) = frame.pose.people
        body = person.body[:, :2] * (detection.shape[1], detection.shape[0])  # where it was aligned
        np.testing.assert_allclose(body[1], reference_body[1], atol=1e-6)
        for parent, child in SEGMENTS[:17]:
            expected = np.linalg.norm(reference_body[child] - reference_body[parent])
            assert np.linalg.norm(body[child] - body[parent]) == pytest.approx(expected, rel=1e-6)


def test_a_reference_without_a_person_fails_the_video_with_its_reason(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", moving_frames(3))
    Image.fromarray(blob_image(64, 64, [])).save(tmp_path / "empty.png")
    (tmp_path / "bad.json").write_text('{"people": []}')
    for reference, reason in (
        ("empty.png", "the reference has no person"),
        ("bad.json", "not OpenPose JSON"),
    ):
        out = tmp_path / f"out_{reference}"
        assert (
            main([str(video), "-o", str(out), "--align-to", str(tmp_path / reference), *SMALL], blob_factory)
            == 1
        )
        assert reason in capsys.readouterr().err
        assert not list(out.glob("*.mp4"))


@pytest.mark.slow
def test_the_python_examples_in_docs_video_md_run(tmp_path, monkeypatch):
    from tiny_pipelines import save_posing_detector

    doc = ROOT / "docs" / "video.md"
    if not doc.exists():
        pytest.skip("docs/video.md is not in this checkout")
    det_model, pose_model = save_posing_detector(tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    write_video(
        tmp_path / "driving.mp4", [blob_image(96, 96, [(20 + 4 * t, 10, 40, 70)], seed=t) for t in range(5)]
    )
    Image.open(ROOT / "examples" / "images" / "astronaut.png").save(tmp_path / "reference.png")
    (tmp_path / "clip.mp4").write_bytes((tmp_path / "driving.mp4").read_bytes())
    assert main(["clip.mp4", "-o", "out", "--json", *SMALL], blob_factory) == 0  # out/clip/*.json
    blocks = [block.split("```", 1)[0] for block in doc.read_text().split("```python\n")[1:]]
    assert len(blocks) == 2
    namespace: dict = {}
    first = blocks[0].replace("DWposeDetector()", f"DWposeDetector({str(det_model)!r}, {str(pose_model)!r})")
    exec(compile(first, str(doc), "exec"), namespace)
    assert len(namespace["maps"]) == 5 and namespace["maps"][0].shape == (512, 512, 3)  # astronaut.png
    assert len(json.loads((tmp_path / "driving.json").read_text())) == 5
    namespace["sequence"] = namespace["aligned"]
    exec(compile(blocks[1], str(doc), "exec"), namespace)
    assert len(namespace["sequence"]) == 5 and namespace["sequence"].frames[0].track_ids == (0,)


def test_a_broken_video_fails_with_its_reason_in_two_passes(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", moving_frames(4))
    (tmp_path / "broken.mp4").write_bytes(video.read_bytes()[:600])
    argv = [str(tmp_path / "broken.mp4"), "-o", str(tmp_path / "out"), "--smooth", *SMALL]
    assert main(argv, blob_factory) == 1
    assert "broken.mp4" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.mp4"))
