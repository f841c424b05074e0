"""Discovery, output planning, atomic writes, resumability, bad inputs and the local engine."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from render_fakes import BlobEstimator, blob_factory, blob_image

from dwpose_ctrl.engines import (
    JobSettings,
    OutputOptions,
    RenderSettings,
    Source,
    Storage,
    discover,
    plan,
    render_files,
)
from dwpose_ctrl.engines.item import decode_image
from dwpose_ctrl.engines.pose import render_outputs
from dwpose_ctrl.engines.storage import PARTIAL_SUFFIX
from dwpose_ctrl.openpose import frame_to_json, persons_to_openpose
from dwpose_ctrl.render import draw_openpose

SMALL = RenderSettings(detect_resolution=128, image_resolution=128)


def save(path: Path, image: np.ndarray | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = blob_image(96, 128, [(10 + seed * 7, 10, 30, 60), (80, 20, 20, 50)], seed=seed)
    Image.fromarray(image).save(path)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative posix path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def job(**outputs) -> JobSettings:
    return JobSettings(render=SMALL, outputs=OutputOptions(**outputs))


def run(inputs, out, **kwargs):
    return render_files([str(i) for i in inputs], str(out), blob_factory, kwargs.pop("job", job()), **kwargs)


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# discovery and planning -----------------------------------------------------------------------
def test_folder_tree_is_mirrored(tmp_path):
    for relative in ("a.jpg", "sub/b.png", "sub/deeper/c.webp", "sub/deeper/notes.txt", "other/d.JPG"):
        if relative.endswith(".txt"):
            (tmp_path / "in" / relative).write_text("caption")
        else:
            save(tmp_path / "in" / relative)
    report = run([tmp_path / "in"], tmp_path / "out")
    assert report.counts["done"] == 4 and report.exit_code == 0
    assert sorted(tree(tmp_path / "out")) == ["a.png", "other/d.png", "sub/b.png", "sub/deeper/c.png"]


def test_globs_files_and_non_ascii_names_with_spaces(tmp_path):
    save(tmp_path / "in" / "shoot one" / "été 1.jpg")
    save(tmp_path / "in" / "shoot one" / "x.png")
    save(tmp_path / "in" / "deep" / "k" / "y.jpg")
    single = save(tmp_path / "single ü.png")
    report = run([f"{tmp_path}/in/**/*.jpg", single], tmp_path / "out")
    assert report.exit_code == 0
    assert sorted(tree(tmp_path / "out")) == ["deep/k/y.png", "shoot one/été 1.png", "single ü.png"]


def test_colliding_names_keep_full_names_and_overlay_names_never_clash(tmp_path):
    for name in ("a.jpg", "a.png", "A.webp", "b.jpg", "b.overlay.jpg"):
        save(tmp_path / "in" / name)
    sources, problems = discover([str(tmp_path / "in")])
    assert problems == []
    items = plan(sources, str(tmp_path / "out"), OutputOptions(overlay=True))
    names = {Path(i.source.location).name: Path(i.final).name for i in items}
    assert names == {
        "a.jpg": "a.jpg.png",
        "a.png": "a.png.png",
        "A.webp": "A.webp.png",  # case-insensitive disks would mix A.png and a.png
        "b.jpg": "b.jpg.png",  # b.overlay.png would be both b.jpg's overlay and b.overlay.jpg's map
        "b.overlay.jpg": "b.overlay.jpg.png",
    }
    claimed = [path for item in items for path in item.required]
    assert len({p.lower() for p in claimed}) == len(claimed)


def test_same_relative_path_from_two_roots_gets_hashed_stems(tmp_path):
    save(tmp_path / "one" / "x.jpg")
    save(tmp_path / "two" / "x.jpg", seed=1)
    report = run([tmp_path / "one", tmp_path / "two"], tmp_path / "out")
    assert report.exit_code == 0
    names = sorted(tree(tmp_path / "out"))
    assert len(names) == 2 and all(name.startswith("x.jpg~") and name.endswith(".png") for name in names)
    assert names == sorted(tree(tmp_path / "out"))  # same plan on a second look
    again = plan(
        discover([str(tmp_path / "one"), str(tmp_path / "two")])[0], str(tmp_path / "out"), OutputOptions()
    )
    assert sorted(Path(i.final).name for i in again) == names


def test_output_folder_inside_input_is_never_read(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    save(tmp_path / "in" / "b.png", seed=1)
    out = tmp_path / "in" / "maps"
    first = run([tmp_path / "in"], out, job=job(overlay=True))
    second = run([tmp_path / "in"], out, job=job(overlay=True))
    assert first.counts["done"] == 2
    assert second.counts == {"done": 0, "skipped": 2, "failed": 0, "interrupted": 0}
    assert sorted(tree(out)) == ["a.overlay.png", "a.png", "b.overlay.png", "b.png"]


def test_symlink_loops_and_broken_links_are_reported(tmp_path):
    save(tmp_path / "in" / "sub" / "a.jpg")
    os.symlink(tmp_path / "in", tmp_path / "in" / "sub" / "loop")
    os.symlink("self.jpg", tmp_path / "in" / "self.jpg")
    os.symlink(tmp_path / "missing.png", tmp_path / "in" / "dangling.png")
    report = run([tmp_path / "in"], tmp_path / "out")
    reasons = {Path(r.location).name: r.reason for r in report.failures}
    assert "symlink loop" in reasons["loop"]
    assert "symlink loop" in reasons["self.jpg"]
    assert "broken symlink" in reasons["dangling.png"]
    assert report.counts["done"] == 1 and report.exit_code == 1
    assert sorted(tree(tmp_path / "out")) == ["sub/a.png"]


def test_missing_input_is_a_failure_not_a_crash(tmp_path):
    save(tmp_path / "a.jpg")
    report = run([tmp_path / "a.jpg", tmp_path / "nope", f"{tmp_path}/*.nothing"], tmp_path / "out")
    assert report.counts["done"] == 1 and report.counts["failed"] == 2 and report.exit_code == 1
    assert {r.reason for r in report.failures} == {"no such file or folder", "the pattern matches no file"}


# outputs --------------------------------------------------------------------------------------
def test_map_json_and_overlay_are_drawn_from_one_estimate(tmp_path):
    image = blob_image(96, 128, [(10, 10, 30, 60), (80, 20, 20, 50)])
    save(tmp_path / "in" / "p.png", image)
    assert run([tmp_path / "in"], tmp_path / "out", job=job(json=True, overlay=True)).exit_code == 0
    detection_image = SMALL.detection_image(image)
    persons = BlobEstimator().estimate(detection_image)
    assert len(persons) == 2
    frame = persons_to_openpose(persons, detection_image.shape[1], detection_image.shape[0])
    expected_map = cv2.resize(draw_openpose(frame), (192, 128), interpolation=cv2.INTER_LINEAR)
    expected_overlay = cv2.resize(
        draw_openpose(frame, detection_image), (192, 128), interpolation=cv2.INTER_LINEAR
    )
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "p.png"), expected_map)
    np.testing.assert_array_equal(read_png(tmp_path / "out" / "p.overlay.png"), expected_overlay)
    written = json.loads((tmp_path / "out" / "p.json").read_text())
    assert written == frame_to_json(frame, 128, 96)
    assert written["canvas_width"] == 128 and len(written["people"]) == 2
    assert expected_map.any() and not np.array_equal(expected_map, expected_overlay)


def test_render_outputs_adds_person_ids_only_for_tracked_persons():
    image = blob_image(96, 128, [(10, 10, 30, 60)])
    detection = SMALL.detection_image(image)
    (person,) = BlobEstimator().estimate(detection)
    plain = render_outputs(image, detection, [person], SMALL, True, False)
    tracked = render_outputs(
        image, detection, [person.__class__(**{**person.__dict__, "track_id": 7})], SMALL, True, False
    )
    assert "person_id" not in plain.openpose_json["people"][0]
    assert tracked.openpose_json["people"][0]["person_id"] == [7]
    assert plain.overlay is None


def test_metadata_jsonl_for_controlnet_training(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    save(tmp_path / "in" / "sub" / "b.png", seed=1)
    (tmp_path / "in" / "a.txt").write_text("a person dancing\n", encoding="utf-8")
    (tmp_path / "in" / "bad.jpg").write_bytes(b"garbage")
    report = run([tmp_path / "in"], tmp_path / "out", job=job(metadata=True))
    assert report.counts["done"] == 2 and report.counts["failed"] == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert rows == [
        {"file_name": "images/a.jpg", "conditioning_image_file_name": "a.png", "text": "a person dancing"},
        {"file_name": "images/sub/b.png", "conditioning_image_file_name": "sub/b.png", "text": ""},
    ]
    for row in rows:
        source = tmp_path / "in" / row["file_name"].removeprefix("images/")
        assert (tmp_path / "out" / row["file_name"]).read_bytes() == source.read_bytes()
        assert (tmp_path / "out" / row["conditioning_image_file_name"]).is_file()


def test_prefetch_and_sequential_runs_write_identical_files(tmp_path):
    for index in range(6):
        save(tmp_path / "in" / f"{index}.jpg", seed=index)
    run([tmp_path / "in"], tmp_path / "seq", prefetch=0, loaders=0, job=job(json=True, overlay=True))
    run([tmp_path / "in"], tmp_path / "par", prefetch=3, loaders=2, job=job(json=True, overlay=True))
    assert tree(tmp_path / "seq") == tree(tmp_path / "par")
    assert len(tree(tmp_path / "seq")) == 18


# resumability ---------------------------------------------------------------------------------
def test_skip_redo_missing_outputs_and_overwrite(tmp_path):
    for index in range(3):
        save(tmp_path / "in" / f"{index}.jpg", seed=index)
    options = job(json=True)
    assert run([tmp_path / "in"], tmp_path / "out", job=options).counts["done"] == 3
    reference = tree(tmp_path / "out")
    (tmp_path / "out" / "1.json").unlink()  # an item is done only when ALL its outputs exist
    again = run([tmp_path / "in"], tmp_path / "out", job=options)
    assert again.counts == {"done": 1, "skipped": 2, "failed": 0, "interrupted": 0}
    assert tree(tmp_path / "out") == reference
    assert run([tmp_path / "in"], tmp_path / "out", job=options, overwrite=True).counts["done"] == 3


def test_stale_partial_files_are_removed_and_never_count_as_outputs(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / f".a.png.x1{PARTIAL_SUFFIX}").write_bytes(b"half a png")
    report = run([tmp_path / "in"], out)
    assert report.counts["done"] == 1
    assert sorted(tree(out)) == ["a.png"]


def test_atomic_write_leaves_old_file_or_nothing(tmp_path):
    storage = Storage()
    target = tmp_path / "f.bin"
    storage.write_bytes(str(target), b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), storage.atomic_local_path(str(target)) as temporary:
        Path(temporary).write_bytes(b"new but unfinished")
        raise Boom
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_stop_event_finishes_current_item_then_resume_matches_uninterrupted(tmp_path):
    for index in range(8):
        save(tmp_path / "in" / f"{index}.jpg", seed=index)
    stop = threading.Event()
    seen = []

    def on_result(result):
        seen.append(result)
        if len(seen) == 2:
            stop.set()

    options = job(json=True, overlay=True)
    first = run([tmp_path / "in"], tmp_path / "out", job=options, stop=stop, on_result=on_result, prefetch=2)
    assert first.interrupted and first.exit_code == 130
    assert 2 <= first.counts["done"] < 8 and first.counts["interrupted"] == 8 - first.counts["done"]
    assert not list((tmp_path / "out").rglob(f"*{PARTIAL_SUFFIX}"))
    second = run([tmp_path / "in"], tmp_path / "out", job=options)
    assert second.counts["skipped"] == first.counts["done"] and second.exit_code == 0
    run([tmp_path / "in"], tmp_path / "clean", job=options)
    assert tree(tmp_path / "out") == tree(tmp_path / "clean")


# bad inputs -----------------------------------------------------------------------------------
def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_every_bad_input_is_reported_and_the_good_ones_rendered(tmp_path):
    folder = tmp_path / "in"
    save(folder / "good 1.jpg")
    save(folder / "ünïcode" / "good2.png", seed=1)
    good_jpeg = (folder / "good 1.jpg").read_bytes()
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    (folder / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (folder / "bomb.png").write_bytes(png_with_size(30000, 30000))
    save(folder / "strip.png", np.zeros((1, 2000, 3), np.uint8))
    (folder / "folder.jpg").mkdir()
    (folder / "notes.txt").write_text("ignored: not an image extension")
    explicit_text = tmp_path / "readme.txt"
    explicit_text.write_text("given explicitly, so it is tried")
    report = run([folder, explicit_text], tmp_path / "out")
    reasons = {Path(r.location).name: r.reason for r in report.failures}
    assert reasons.keys() == {
        "zero.png",
        "text.jpg",
        "truncated.jpg",
        "corrupt.png",
        "bomb.png",
        "strip.png",
        "readme.txt",
    }
    assert reasons["zero.png"] == "empty file (0 bytes)"
    assert reasons["text.jpg"].startswith("not an image")
    assert reasons["readme.txt"].startswith("not an image")
    assert "truncated" in reasons["truncated.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "aspect ratio" in reasons["strip.png"]
    assert report.counts == {"done": 2, "skipped": 0, "failed": 7, "interrupted": 0}
    assert report.exit_code == 1
    assert "failed 7" in report.summary()
    assert sorted(tree(tmp_path / "out")) == ["good 1.png", "ünïcode/good2.png"]


def test_max_pixels_limit_names_the_option():
    data = Image.fromarray(np.zeros((100, 100, 3), np.uint8))
    buffer = io.BytesIO()
    data.save(buffer, format="PNG")
    with pytest.raises(ValueError, match="--max-pixels 5000"):
        decode_image(buffer.getvalue(), max_pixels=5000)


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    save(tmp_path / "in" / "ok.jpg")
    locked = save(tmp_path / "in" / "locked.jpg", seed=1)
    if os.geteuid() == 0:  # root reads through chmod 000: simulate the denied read instead
        original = Storage.open_input

        def open_input(self, location):
            if location.endswith("locked.jpg"):
                raise PermissionError(13, "Permission denied", location)
            return original(self, location)

        monkeypatch.setattr(Storage, "open_input", open_input)
    else:
        locked.chmod(0)
    try:
        report = run([tmp_path / "in"], tmp_path / "out")
    finally:
        locked.chmod(0o644)
    (failure,) = report.failures
    assert failure.location.endswith("locked.jpg") and "permission denied" in failure.reason
    assert sorted(tree(tmp_path / "out")) == ["ok.png"]


def test_plan_reports_nothing_for_an_empty_folder(tmp_path):
    (tmp_path / "in").mkdir()
    sources, problems = discover([str(tmp_path / "in")])
    assert sources == [] and problems == []
    assert plan([Source("x.jpg", "x.jpg", "image")], "out", OutputOptions(json=True))[0].required == (
        os.path.join("out", "x.json"),
        os.path.join("out", "x.png"),
    )


def test_metadata_folder_loads_as_a_controlnet_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save(tmp_path / "in" / "a.jpg")
    save(tmp_path / "in" / "sub" / "b.png", seed=1)
    (tmp_path / "in" / "sub" / "b.txt").write_text("two figures", encoding="utf-8")
    run([tmp_path / "in"], tmp_path / "dataset", job=job(metadata=True))
    rows = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "dataset"), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert rows.column_names == ["image", "conditioning_image", "text"]
    assert rows["text"] == ["", "two figures"]
    for row, photo, control in zip(rows, ["a.jpg", "sub/b.png"], ["a.png", "sub/b.png"], strict=True):
        np.testing.assert_array_equal(np.asarray(row["image"]), read_png(tmp_path / "in" / photo))
        np.testing.assert_array_equal(
            np.asarray(row["conditioning_image"]), read_png(tmp_path / "dataset" / control)
        )


def test_hidden_files_and_folders_are_skipped_unless_named(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    (tmp_path / "in" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    save(tmp_path / "in" / ".git" / "icon.png")
    save(tmp_path / "in" / "sub" / ".thumb.png")
    sources, problems = discover([str(tmp_path / "in")])
    assert [s.relative for s in sources] == ["a.jpg"] and problems == []
    named, _ = discover([str(tmp_path / "in" / "sub" / ".thumb.png")])
    assert [s.relative for s in named] == [".thumb.png"]


def test_video_frame_folders_never_mix_with_other_outputs():
    sources = [
        Source("in/clip.mp4", "clip.mp4", "video"),
        Source("in/clip/x.jpg", "clip/x.jpg", "image"),
        Source("in/a.mp4", "a.mp4", "video"),
        Source("in/a/b.mp4", "a/b.mp4", "video"),
        Source("in/solo.mp4", "solo.mp4", "video"),
    ]
    items = plan(sources, "out", OutputOptions(json=True))
    frames = {item.source.relative: item.frames_dir for item in items}
    assert frames["clip.mp4"] == os.path.join("out", "clip.mp4")
    assert frames["a.mp4"] == os.path.join("out", "a.mp4")
    assert frames["a/b.mp4"] == os.path.join("out", "a", "b.mp4")
    assert frames["solo.mp4"] == os.path.join("out", "solo")
    assert [Path(i.final).name for i in items] == [
        "clip.mp4.mp4",
        "x.jpg.png",
        "a.mp4.mp4",
        "b.mp4.mp4",
        "solo.mp4",
    ]


def _planned_lines(count: int) -> int:
    """Lines of ``dwpose_ctrl/engines/plan.py`` executed while planning ``count`` items (a
    measure of the work that does not depend on the machine's speed or load)."""
    import sys

    sources = [Source(f"in/d{i % 100}/p{i}.jpg", f"d{i % 100}/p{i}.jpg", "image") for i in range(count)]
    sources += [Source(f"in/v{i}.mp4", f"v{i}.mp4", "video") for i in range(count // 50)]
    planner_file = sys.modules[plan.__module__].__file__
    lines = 0

    def local(frame, event, arg):
        nonlocal lines
        lines += event == "line"
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == planner_file else None

    sys.settrace(tracer)
    try:
        items = plan(sources, "out", OutputOptions(json=True, overlay=True))
    finally:
        sys.settrace(None)
    assert len(items) == len(sources)
    return lines


def test_planning_work_grows_linearly_with_the_number_of_items():
    # 4x the items: a linear plan does ~4x the work, a pairwise collision check ~16x.
    assert _planned_lines(4000) / _planned_lines(1000) < 5
