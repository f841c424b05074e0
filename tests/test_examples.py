"""The example scripts: --help works, and each runs end to end on tiny local models (no downloads)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dwpose_ctrl.detector import DWposeDetector
from dwpose_ctrl.diffusers_utils import fit_control_image
from dwpose_ctrl.openpose import OPENPOSE_BODY_NAMES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = [
    "sd15_openpose",
    "sdxl_openpose",
    "multi_person",
    "video_pose_transfer",
    "edit_pose",
    "animate_pose_transfer",
]
GRACE = EXAMPLES / "images" / "grace_hopper.jpg"
JOINT = {name: index for index, name in enumerate(OPENPOSE_BODY_NAMES)}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{script}.py"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert "--output-dir" in done.stdout
    if script != "edit_pose":
        assert "--model-id" in done.stdout and "--controlnet-id" in done.stdout


@pytest.fixture(scope="module")
def example():
    """Import an example script as a module (its folder on sys.path, as when run as a script)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(EXAMPLES))
        for name in [*SCRIPTS, "example_utils"]:
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_pipelines import (
        TWO_PERSONS,
        save_posing_detector,
        save_tiny_sd_controlnet,
        save_tiny_sdxl_controlnet,
    )

    folder = tmp_path_factory.mktemp("tiny_models")
    sd = save_tiny_sd_controlnet(folder / "sd")
    sdxl = save_tiny_sdxl_controlnet(folder / "sdxl")
    one = save_posing_detector(folder / "one_person")
    two = save_posing_detector(folder / "two_persons", TWO_PERSONS)
    return {
        "sd": ["--model-id", str(sd), "--controlnet-id", str(sd / "controlnet"), "--steps", "2"],
        "sdxl": ["--model-id", str(sdxl), "--controlnet-id", str(sdxl / "controlnet"), "--steps", "2"],
        "one": ["--det-model", str(one[0]), "--pose-model", str(one[1])],
        "two": ["--det-model", str(two[0]), "--pose-model", str(two[1])],
        "one_paths": one,
    }


def test_sd15_openpose_end_to_end(example, tiny, tmp_path):
    args = [
        "--image",
        str(GRACE),
        "--resolution",
        "64",
        "--detect-resolution",
        "128",
        "--output-dir",
        str(tmp_path),
    ]
    example("sd15_openpose").main(args + tiny["sd"] + tiny["one"])
    control = Image.open(tmp_path / "control.png")
    detector = DWposeDetector(*tiny["one_paths"])
    expected = detector(Image.open(GRACE), detect_resolution=128, image_resolution=64)
    np.testing.assert_array_equal(np.asarray(control), np.asarray(expected))
    assert Image.open(tmp_path / "result.png").size == control.size == (64, 64)
    assert (tmp_path / "comparison.png").exists()


def test_sdxl_openpose_fits_the_stick_scaled_map_to_the_requested_size(example, tiny, tmp_path):
    args = ["--image", str(GRACE), "--resolution", "512", "--detect-resolution", "128"]
    args += ["--width", "64", "--height", "96", "--output-dir", str(tmp_path)]
    example("sdxl_openpose").main(args + tiny["sdxl"] + tiny["one"])
    detector = DWposeDetector(*tiny["one_paths"])
    scaled = detector(Image.open(GRACE), detect_resolution=128, image_resolution=512, stick_scaling=True)
    expected = fit_control_image(scaled, 64, 96)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "control.png")), np.asarray(expected))
    assert Image.open(tmp_path / "result.png").size == (64, 96)


def test_sdxl_openpose_needs_both_width_and_height(example, tiny, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        example("sdxl_openpose").main(["--width", "64", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_multi_person_keeps_the_chosen_persons(example, tiny, tmp_path):
    run = example("multi_person").main
    run(
        ["--skip-generation", "--detect-resolution", "128", "--output-dir", str(tmp_path / "all")]
        + tiny["two"]
    )
    everyone = json.loads((tmp_path / "all" / "persons.json").read_text())
    assert len(everyone["people"]) == 2
    assert not (tmp_path / "all" / "result.png").exists()

    args = [
        "--keep",
        "1",
        "--resolution",
        "64",
        "--detect-resolution",
        "128",
        "--output-dir",
        str(tmp_path / "one"),
    ]
    run(args + tiny["two"] + tiny["sd"])
    kept = json.loads((tmp_path / "one" / "persons.json").read_text())
    # persons are numbered left to right: --keep 1 is the right-hand one
    assert kept["people"] == [max(everyone["people"], key=lambda person: person["pose_keypoints_2d"][0])]
    result = Image.open(tmp_path / "one" / "result.png")
    assert result.size == Image.open(tmp_path / "one" / "control.png").size
    assert result.height == 64


def test_multi_person_rejects_unknown_indices(example, tiny, tmp_path):
    with pytest.raises(SystemExit):
        example("multi_person").main(
            ["--skip-generation", "--keep", "5", "--output-dir", str(tmp_path)] + tiny["two"]
        )


def _write_clip(path: Path, frames: int = 6) -> Path:
    from dwpose_ctrl.video import VideoWriter

    photo = np.asarray(Image.open(GRACE).convert("RGB").resize((128, 128)))
    writer = VideoWriter(str(path), "libx264", "yuv420p", 128, 128, Fraction(1, 10), Fraction(10))
    for index in range(frames):
        writer.write(np.roll(photo, 4 * index, axis=1), index)
    writer.close()
    return path


@pytest.mark.slow
def test_video_pose_transfer_end_to_end(example, tiny, tmp_path):
    clip = _write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    args = ["--video", str(clip), "--every", "2", "--batch-size", "2", "--resolution", "64"]
    args += ["--detect-resolution", "128", "--output-dir", str(out)]
    example("video_pose_transfer").main(args + tiny["one"] + tiny["sd"])
    maps = sorted((out / "maps" / "clip").glob("*.png"))
    assert [path.name for path in maps] == [f"{index:06d}.png" for index in range(6)]
    assert len(list((out / "maps" / "clip").glob("*.json"))) == 6
    frames = sorted((out / "frames").glob("*.png"))
    assert [path.name for path in frames] == ["000000.png", "000002.png", "000004.png"]
    gif = Image.open(out / "result.gif")
    assert gif.n_frames == 3 and gif.size == (64, 64)
    assert gif.info["duration"] == 200  # every 2nd frame of a 10 fps video


@pytest.mark.slow
def test_animate_pose_transfer_end_to_end(example, tiny, tmp_path):
    from tiny_pipelines import save_tiny_motion_adapter

    model_id = Path(tiny["sd"][1])
    adapter = save_tiny_motion_adapter(tmp_path / "motion_adapter", model_id / "unet")
    clip = _write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    args = ["--video", str(clip), "--reference", str(GRACE), "--every", "2", "--resolution", "64"]
    args += ["--detect-resolution", "128", "--output-dir", str(out), "--motion-adapter-id", str(adapter)]
    example("animate_pose_transfer").main(args + tiny["one"] + tiny["sd"])
    maps = sorted((out / "maps" / "clip").glob("*.png"))
    assert [path.name for path in maps] == [f"{index:06d}.png" for index in range(6)]
    sequence = json.loads((out / "maps" / "clip.json").read_text())
    grace = Image.open(GRACE)
    assert [(f["canvas_width"], f["canvas_height"]) for f in sequence] == [grace.size] * 6
    conditioning = Image.open(out / "conditioning.gif")
    assert conditioning.size == Image.open(maps[0]).size  # (identical maps: GIF keeps one frame)
    frames = sorted((out / "frames").glob("*.png"))
    assert [path.name for path in frames] == ["000000.png", "000002.png", "000004.png"]
    result = Image.open(out / "result.gif")
    assert result.n_frames == 3 and result.size == conditioning.size


def _body(data: dict, joint: str) -> np.ndarray:
    values = data["people"][0]["pose_keypoints_2d"]
    return np.array(values[3 * JOINT[joint] : 3 * JOINT[joint] + 3])


def _points(data: dict, key: str) -> np.ndarray:
    return np.array(data["people"][0][key]).reshape(-1, 3)


def _run_edit(example, tmp_path, *edits: str) -> tuple[dict, dict]:
    example("edit_pose").main([*edits, "--resolution", "64", "--output-dir", str(tmp_path)])
    original = json.loads((tmp_path / "original.json").read_text())
    edited = json.loads((tmp_path / "edited.json").read_text())
    return original, edited


def test_edit_pose_mirror_swaps_sides(example, tmp_path):
    original, edited = _run_edit(example, tmp_path, "--mirror")
    width = original["canvas_width"]
    assert edited["canvas_width"] == width
    nose, mirrored_nose = _body(original, "nose"), _body(edited, "nose")
    np.testing.assert_allclose(mirrored_nose, [width - nose[0], nose[1], 1.0])
    left_shoulder = _body(original, "left_shoulder")
    np.testing.assert_allclose(
        _body(edited, "right_shoulder"), [width - left_shoulder[0], left_shoulder[1], 1.0]
    )
    left_hand = _points(original, "hand_left_keypoints_2d")
    right_after = _points(edited, "hand_right_keypoints_2d")
    np.testing.assert_allclose(right_after[:, 0], width - left_hand[:, 0])
    # the jaw runs the other way: landmark 0 takes landmark 16's mirror image
    face, mirrored_face = _points(original, "face_keypoints_2d"), _points(edited, "face_keypoints_2d")
    np.testing.assert_allclose(mirrored_face[0, :2], [width - face[16, 0], face[16, 1]])
    assert Image.open(tmp_path / "edited.png").size == (64, 96)


def test_edit_pose_rotate_forearm_and_move_wrist_carry_the_hand(example, tmp_path):
    original, edited = _run_edit(
        example, tmp_path, "--rotate", "left_forearm=90", "--move", "right_wrist=10,-20"
    )
    elbow, wrist = _body(original, "left_elbow")[:2], _body(original, "left_wrist")[:2]
    # 90 degrees clockwise on screen (y down): (dx, dy) -> (-dy, dx)
    offset = wrist - elbow
    np.testing.assert_allclose(
        _body(edited, "left_wrist")[:2], elbow + np.array([-offset[1], offset[0]]), atol=1e-9
    )
    hand, turned = _points(original, "hand_left_keypoints_2d"), _points(edited, "hand_left_keypoints_2d")
    hand_offset = hand[:, :2] - elbow
    np.testing.assert_allclose(
        turned[:, :2], elbow + np.stack([-hand_offset[:, 1], hand_offset[:, 0]], 1), atol=1e-9
    )
    np.testing.assert_allclose(_body(edited, "left_elbow"), _body(original, "left_elbow"))
    np.testing.assert_allclose(
        _body(edited, "right_wrist")[:2], _body(original, "right_wrist")[:2] + np.array([10, -20])
    )
    moved_hand = _points(edited, "hand_right_keypoints_2d")
    np.testing.assert_allclose(
        moved_hand[:, :2], _points(original, "hand_right_keypoints_2d")[:, :2] + [10, -20]
    )


def test_edit_pose_drop_face_and_generate(example, tiny, tmp_path):
    example("edit_pose").main(
        [
            "--drop",
            "face",
            "--drop",
            "hands",
            "--generate",
            "--resolution",
            "64",
            "--output-dir",
            str(tmp_path),
        ]
        + tiny["sd"]
    )
    edited = json.loads((tmp_path / "edited.json").read_text())
    person = edited["people"][0]
    assert person["face_keypoints_2d"] is None
    assert person["hand_left_keypoints_2d"] is None and person["hand_right_keypoints_2d"] is None
    assert Image.open(tmp_path / "result.png").size == (64, 96)


def test_edit_pose_from_a_detected_image(example, tiny, tmp_path):
    example("edit_pose").main(
        ["--image", str(GRACE), "--shift", "5,0", "--output-dir", str(tmp_path)] + tiny["one"]
    )
    original = json.loads((tmp_path / "original.json").read_text())
    edited = json.loads((tmp_path / "edited.json").read_text())
    assert (original["canvas_width"], original["canvas_height"]) == Image.open(GRACE).size
    np.testing.assert_allclose(_body(edited, "neck")[:2], _body(original, "neck")[:2] + np.array([5, 0]))


@pytest.mark.parametrize("bad", [["--rotate", "elbow=3"], ["--move", "left_wrist=3"], ["--person", "4"]])
def test_edit_pose_rejects_bad_edits(example, tmp_path, bad):
    with pytest.raises(SystemExit) as exit_info:
        example("edit_pose").main([*bad, "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_sd15_openpose_warns_when_nobody_is_found(example, tiny, tmp_path, capsys):
    from tiny_pipelines import save_posing_detector

    det_model, pose_model = save_posing_detector(tmp_path / "nobody", boxes=())
    args = [
        "--image",
        str(GRACE),
        "--resolution",
        "64",
        "--detect-resolution",
        "128",
        "--output-dir",
        str(tmp_path),
    ]
    args += ["--det-model", str(det_model), "--pose-model", str(pose_model)]
    example("sd15_openpose").main(args + tiny["sd"])
    assert "no person was found" in capsys.readouterr().out
    assert Image.open(tmp_path / "control.png").getbbox() is None


@pytest.mark.parametrize(
    ("script", "bad"),
    [
        ("video_pose_transfer", ["--video", "clip.mp4", "--every", "0"]),
        ("sd15_openpose", ["--steps", "-1"]),
        ("multi_person", ["--max-persons", "0"]),
    ],
)
def test_examples_reject_non_positive_counts(example, tmp_path, script, bad):
    with pytest.raises(SystemExit) as exit_info:
        example(script).main([*bad, "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
