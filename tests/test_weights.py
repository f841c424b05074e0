"""Model files: registry, resolution, a fake offline Hugging Face cache, sha256, clear errors."""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import time

import huggingface_hub.constants
import numpy as np
import pytest
from onnx_graphs import constant_yolox, peak_pose, simcc_peaks, yolox_raw

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.runtime import OnnxBackend
from dwpose_ctrl.weights import (
    HOME_ENV,
    REGISTRY,
    ModelFile,
    ModelFileError,
    check_signature,
    download,
    hub_reachable,
    registered,
    resolve_model,
    resolve_models,
    sha256_of,
    verify_file,
)

REPO = "test-org/tiny-dwpose"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


pytestmark = pytest.mark.usefixtures("hub_offline")  # no test here may reach the network


@pytest.fixture()
def tiny_files(tmp_path, monkeypatch):
    """Two small models registered as verified entries (one line each, as real entries)."""
    folder = tmp_path / "made"
    folder.mkdir()
    det = constant_yolox(folder / "tiny_det.onnx", yolox_raw({}, (64, 64)), (64, 64))
    pose = peak_pose(
        folder / "tiny_pose.onnx", *simcc_peaks(np.zeros(133, int), np.zeros(133, int), (64, 48))
    )
    for path, role, name in ((det, "detector", "tiny-det"), (pose, "pose", "tiny-pose")):
        data = path.read_bytes()
        entry = ModelFile(name, role, REPO, path.name, len(data), hashlib.sha256(data).hexdigest())
        monkeypatch.setitem(REGISTRY, name, entry)
    return {"detector": det, "pose": pose}


def fake_hub_cache(cache_dir, files) -> None:
    """Lay files out as huggingface_hub's cache does: refs/main -> snapshots/<commit>/<file>."""
    repo = cache_dir / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for path in files:
        (snapshot / path.name).write_bytes(path.read_bytes())


def test_registry_has_the_official_files_with_their_hashes():
    det, pose = REGISTRY["yolox_l"], REGISTRY["dw-ll_ucoco_384"]
    assert (det.repo_id, det.filename, det.size, det.role) == (
        "yzd-v/DWPose",
        "yolox_l.onnx",
        216_746_733,
        "detector",
    )
    assert det.sha256 == "7860ae79de6c89a3c1eb72ae9a2756c0ccfbe04b7791bb5880afabd97855a411"
    assert (pose.filename, pose.size, pose.role) == ("dw-ll_ucoco_384.onnx", 134_399_116, "pose")
    assert pose.sha256 == "724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843"
    assert det.verified and pose.verified
    assert registered("yolox_l.onnx") is det and registered("nothing") is None
    unverified = ModelFile("x", "pose", "a/b", "x.pth", None, None)
    assert not unverified.verified


def test_unverified_entries_are_used_unchecked(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(b"anything")
    assert verify_file(path, ModelFile("x", "pose", "a/b", "x.pth", None, None)) == path


def test_paths_are_used_as_given(tiny_files):
    assert resolve_model(tiny_files["pose"], "pose") == tiny_files["pose"]
    assert resolve_model(str(tiny_files["detector"]), "detector") == tiny_files["detector"]


@pytest.mark.parametrize(
    ("model", "role", "message"),
    [
        ("missing/dir/model.onnx", "pose", "does not exist"),
        ("model.onnx", "detector", "does not exist"),
        ("rtmpose-xxl", "pose", "unknown pose model 'rtmpose-xxl'.*dw-ll_ucoco_384"),
        ("yolox_l", "pose", "yolox_l is a detector model, not a pose model"),
    ],
)
def test_bad_model_arguments(model, role, message):
    with pytest.raises(ModelFileError, match=message):
        resolve_model(model, role)


def test_model_argument_type_is_checked():
    with pytest.raises(TypeError, match="path or a registered name"):
        resolve_model(3, "pose")


def test_local_dir_and_home_env(tiny_files, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "tiny_pose.onnx").write_bytes(tiny_files["pose"].read_bytes())
    monkeypatch.setenv(HOME_ENV, str(home))
    assert resolve_model("tiny-pose", "pose") == home / "tiny_pose.onnx"
    assert resolve_model("tiny_pose.onnx", "pose") == home / "tiny_pose.onnx"
    local = tmp_path / "local"
    local.mkdir()
    (local / "tiny_pose.onnx").write_bytes(tiny_files["pose"].read_bytes())
    assert resolve_model("tiny-pose", "pose", local_dir=local) == local / "tiny_pose.onnx"


def test_truncated_and_corrupt_files_are_refused(tiny_files, tmp_path):
    data = tiny_files["pose"].read_bytes()
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "tiny_pose.onnx").write_bytes(data[:-100])
    with pytest.raises(ModelFileError, match="truncated or corrupt; delete it and download it again"):
        resolve_model("tiny-pose", "pose", local_dir=folder)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (folder / "tiny_pose.onnx").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match=r"does not have the sha256 of tiny_pose\.onnx"):
        resolve_model("tiny-pose", "pose", local_dir=folder)
    # a user path named like a registered file, of the registered size, is verified too
    with pytest.raises(ModelFileError, match="sha256"):
        resolve_model(folder / "tiny_pose.onnx", "pose")


def test_download_from_the_hub_cache_offline(tiny_files, tmp_path):
    cache = tmp_path / "hf-cache"
    fake_hub_cache(cache, [tiny_files["pose"]])
    path = resolve_model("tiny-pose", "pose", cache_dir=cache)
    assert path.read_bytes() == tiny_files["pose"].read_bytes()
    assert COMMIT in str(path)
    missing = r"^model files missing: tiny_det\.onnx \(looked in \$DWPOSE_CTRL_HOME \(not set\), the Hugging"
    with pytest.raises(ModelFileError, match=missing):
        resolve_model("tiny-det", "detector", cache_dir=cache)
    fix = r"not in the Hugging Face cache.*`hf download test-org/tiny-dwpose tiny_det.onnx --local-dir DIR`"
    with pytest.raises(ModelFileError, match=fix):
        download(REPO, "tiny_det.onnx", cache_dir=cache)


def test_official_models_missing_while_offline_name_both_files_and_the_commands(tmp_path):
    folder = tmp_path / "models"
    started = time.monotonic()
    with pytest.raises(ModelFileError) as caught:
        DWposeDetector(local_dir=folder)
    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        f"model files missing: yolox_l.onnx, dw-ll_ucoco_384.onnx (looked in {folder} (local_dir / "
        "--models-dir), $DWPOSE_CTRL_HOME (not set), the Hugging Face cache); HF_HUB_OFFLINE is set. "
        "Fetch them once where the Hub is reachable: "
        f"`hf download yzd-v/DWPose yolox_l.onnx dw-ll_ucoco_384.onnx --local-dir {folder}`, then run with "
        f"`DWPOSE_CTRL_HOME={folder}` set, or pass `--det-model {folder}/yolox_l.onnx --pose-model "
        f"{folder}/dw-ll_ucoco_384.onnx` (Python: det_model= / pose_model= paths, or local_dir=)"
    )
    with pytest.raises(ModelFileError, match="DWPOSE_CTRL_HOME"):
        resolve_model(None, "pose", cache_dir=tmp_path)


def test_only_the_missing_file_is_named_and_the_env_folder_is_suggested(tiny_files, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "tiny_det.onnx").write_bytes(tiny_files["detector"].read_bytes())
    monkeypatch.setenv(HOME_ENV, str(home))
    with pytest.raises(ModelFileError) as caught:
        resolve_models("tiny-det", "tiny-pose")
    message = str(caught.value)
    assert message.startswith(f"model files missing: tiny_pose.onnx (looked in ${HOME_ENV} ({home}),")
    assert f"`hf download {REPO} tiny_pose.onnx --local-dir {home}`" in message
    assert f"`--pose-model {home}/tiny_pose.onnx`" in message and "--det-model" not in message


def test_an_unreachable_hub_fails_at_once_without_retries(tiny_files, monkeypatch):
    """No HF_HUB_OFFLINE, but nothing listens where the Hub should be: one probe, no retry loop."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not hub_reachable()
    started = time.monotonic()
    with pytest.raises(ModelFileError, match=r"missing: tiny_det\.onnx, tiny_pose\.onnx .*cannot be reached"):
        resolve_models("tiny-det", "tiny-pose")
    assert time.monotonic() - started < 5


def test_cached_verified_files_are_used_without_asking_the_hub(tiny_files, tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    fake_hub_cache(cache, [tiny_files["detector"], tiny_files["pose"]])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("dwpose_ctrl.weights.hub_reachable", lambda: pytest.fail("the Hub was probed"))
    det, pose = resolve_models("tiny-det", "tiny-pose", cache_dir=cache)
    assert COMMIT in str(det) and pose.read_bytes() == tiny_files["pose"].read_bytes()


def test_corrupt_file_in_the_hub_cache_is_refused(tiny_files, tmp_path):
    cache = tmp_path / "hf-cache"
    truncated = tmp_path / "tiny_pose.onnx"
    truncated.write_bytes(tiny_files["pose"].read_bytes()[:50])
    fake_hub_cache(cache, [truncated])
    with pytest.raises(ModelFileError, match="truncated"):
        resolve_model("tiny-pose", "pose", cache_dir=cache)


def test_from_pretrained_folder_and_hub(tiny_files, tmp_path):
    folder = tiny_files["pose"].parent
    detector = DWposeDetector.from_pretrained(
        folder, det_filename="tiny_det.onnx", pose_filename="tiny_pose.onnx", mode="reference"
    )
    assert detector.det_model_path == tiny_files["detector"] and detector.mode == "reference"
    (person,) = detector.estimate(np.zeros((64, 48, 3), np.uint8))
    assert person.box_score is None
    cache = tmp_path / "hf-cache"
    fake_hub_cache(cache, [tiny_files["detector"], tiny_files["pose"]])
    from_hub = DWposeDetector.from_pretrained(
        REPO, det_filename="tiny_det.onnx", pose_filename="tiny_pose.onnx", cache_dir=cache
    )
    assert from_hub.pose_model_path.read_bytes() == tiny_files["pose"].read_bytes()
    with pytest.raises(ModelFileError) as caught:
        DWposeDetector.from_pretrained(REPO, det_filename="other.onnx", cache_dir=cache)
    assert str(caught.value) == (
        "model files missing: other.onnx, dw-ll_ucoco_384.onnx (looked in the Hugging Face cache); "
        "HF_HUB_OFFLINE is set. Fetch them once where the Hub is reachable: `hf download "
        f"{REPO} other.onnx dw-ll_ucoco_384.onnx --local-dir ~/dwpose-models`, then pass `--det-model "
        "~/dwpose-models/other.onnx --pose-model ~/dwpose-models/dw-ll_ucoco_384.onnx` "
        f"(Python: DWposeDetector.from_pretrained({os.path.expanduser('~/dwpose-models')!r}))"
    )


def test_sha256_of_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_of(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_files_onnxruntime_cannot_load_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(
        ValueError, match=r"cannot load .*garbage\.onnx.*truncated, corrupt or not an ONNX model"
    ):
        _ = OnnxBackend(garbage).session


@pytest.mark.parametrize(
    ("role", "inputs", "outputs", "ok"),
    [
        ("detector", [("images", [1, 3, 640, 640])], [("output", [1, 8400, 85])], True),
        ("detector", [("images", [1, 3, 416, 416])], [("output", [1, 3549, 6])], True),
        ("detector", [("images", [1, 3, 640, 640])], [("a", [1, 133, 576]), ("b", [1, 133, 768])], False),
        ("detector", [("images", [1, 3, 640, 640])], [("output", [1, 8400, 4])], False),
        (
            "pose",
            [("input", ["N", 3, 384, 288])],
            [("simcc_x", ["N", 133, 576]), ("simcc_y", ["N", 133, 768])],
            True,
        ),
        ("pose", [("input", [1, 3, 384, 288])], [("output", [1, 8400, 85])], False),
        ("pose", [("a", [1, 3, 8, 8]), ("b", [1, 3, 8, 8])], [("x", [1, 1, 2]), ("y", [1, 1, 2])], False),
        ("pose", [("input", [1, 384, 288])], [("x", [1, 1, 2]), ("y", [1, 1, 2])], False),
    ],
)
def test_signature_check(role, inputs, outputs, ok):
    if ok:
        check_signature("model.onnx", role, inputs, outputs)
    else:
        with pytest.raises(ModelFileError, match=r"model\.onnx does not look like"):
            check_signature("model.onnx", role, inputs, outputs)


def test_dwpose_render_offline_fails_at_once_naming_both_files(tmp_path, capsys):
    from dwpose_ctrl.cli import main

    image = tmp_path / "photo.png"
    image.write_bytes(b"")  # never read: the run stops before the first item
    started = time.monotonic()
    assert main([str(image), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert time.monotonic() - started < 5
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("dwpose-render: error: model files missing: yolox_l.onnx, dw-ll_ucoco_384.onnx ")
    assert "`hf download yzd-v/DWPose yolox_l.onnx dw-ll_ucoco_384.onnx --local-dir ~/dwpose-models`" in error
    assert "`DWPOSE_CTRL_HOME=~/dwpose-models`" in error
    assert (
        "`--det-model ~/dwpose-models/yolox_l.onnx --pose-model ~/dwpose-models/dw-ll_ucoco_384.onnx`"
        in error
    )


def test_the_commands_quote_folders_for_the_shell(tmp_path):
    folder = tmp_path / "my models"
    with pytest.raises(ModelFileError) as caught:
        resolve_models(None, None, local_dir=folder)
    command = str(caught.value).split("`")[1]
    assert shlex.split(command) == [
        "hf", "download", "yzd-v/DWPose", "yolox_l.onnx", "dw-ll_ucoco_384.onnx", "--local-dir", str(folder),
    ]  # fmt: skip
    arguments = str(caught.value).split("`")[5]
    assert shlex.split(arguments)[1] == str(folder / "yolox_l.onnx")
