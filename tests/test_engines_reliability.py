"""Hostile folders and a second run (issue 13): names, concurrency, modes, FIFOs, sizes, depth, no-ops."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from render_fakes import blob_factory, blob_image

from dwpose_ctrl.cli import main
from dwpose_ctrl.engines import (
    JobSettings,
    OutputOptions,
    RenderSettings,
    Smoothing,
    Storage,
    discover,
    plan,
    render_files,
)
from dwpose_ctrl.engines.storage import PARTIAL_SUFFIX

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SMALL = RenderSettings(detect_resolution=128, image_resolution=128)
CLI_SMALL = ["--detect-resolution", "128", "--image-resolution", "128", "-q"]


def save(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(96, 128, [(10 + seed * 7, 10, 30, 60), (80, 20, 20, 50)], seed=seed)).save(
        path
    )
    return path


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def run(inputs, out, **outputs):
    job = JobSettings(render=SMALL, outputs=OutputOptions(**outputs))
    return render_files([str(i) for i in inputs], str(out), blob_factory, job)


def python_child(code: str, timeout: float, **popen) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this worktree and the test helpers."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


# 1. names that are not UTF-8 ---------------------------------------------------------------------
def test_names_that_are_not_utf8_survive_into_report_and_metadata(tmp_path):
    folder = tmp_path / "in"
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not valid UTF-8
    save(folder / name)
    (folder / os.fsdecode(b"caf\xe9.txt")).write_text("a caption", encoding="utf-8")
    save(tmp_path / "second" / name, seed=1)  # same relative name from another root: hashed stems
    report_file = tmp_path / "report.json"
    out = tmp_path / "out"
    args = [str(folder), str(tmp_path / "second"), "-o", str(out), "--metadata", "--report", str(report_file)]
    assert main([*args, *CLI_SMALL], blob_factory) == 0
    report = json.loads(report_file.read_bytes().decode("utf-8"))  # valid UTF-8 JSON
    locations = sorted(os.fsencode(item["location"]) for item in report["items"])
    assert locations == sorted(os.fsencode(str(root / name)) for root in (folder, tmp_path / "second"))
    metadata = (out / "metadata.jsonl").read_bytes().decode("utf-8")
    assert "\\udce9" in metadata  # the documented escape of the byte 0xE9
    rows = [json.loads(line) for line in metadata.splitlines()]
    assert len(rows) == 2 and {row["text"] for row in rows} == {"a caption", ""}
    for row in rows:
        for key in ("file_name", "conditioning_image_file_name"):
            assert (os.fsencode(out) + b"/" + os.fsencode(row[key])).startswith(os.fsencode(out))
            assert os.path.isfile(os.fsencode(out) + b"/" + os.fsencode(row[key]))
        assert os.fsencode(row["file_name"]).startswith(b"images/caf\xe9.jpg")


def test_ray_actor_rows_with_names_that_are_not_utf8_convert_to_arrow(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    from dwpose_ctrl.engines.ray_engine import RenderActor

    save(tmp_path / "in" / os.fsdecode(b"caf\xe9.jpg"))
    (item,) = plan(discover([str(tmp_path / "in")])[0], str(tmp_path / "out"), OutputOptions())
    actor = RenderActor(blob_factory, JobSettings(render=SMALL), Storage())
    columns = actor({"index": np.array([0]), "item": np.array([pickle.dumps(item)], dtype=object)})
    table = pyarrow.table(columns)  # Ray Data keeps rows as Arrow, whose strings must be UTF-8
    assert table.column("status").to_pylist() == ["done"]
    assert table.column("location").to_pylist() == [str(tmp_path / "in" / "caf\\udce9.jpg")]


# 2. metadata of a subset ------------------------------------------------------------------------
def test_metadata_of_a_later_batch_is_merged_never_lost(tmp_path, capsys):
    for index, name in enumerate(["a.jpg", "b.jpg", "sub/c.jpg"]):
        save(tmp_path / "in" / name, seed=index)
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), "-o", str(out), "--metadata", *CLI_SMALL], blob_factory) == 0
    everything = (out / "metadata.jsonl").read_text()
    assert len(everything.splitlines()) == 3
    # a second batch names one file: the rows of the first batch stay
    assert main([str(tmp_path / "in" / "b.jpg"), "-o", str(out), "--metadata", *CLI_SMALL], blob_factory) == 0
    assert (out / "metadata.jsonl").read_text() == everything
    # a new photo adds its row, sorted in
    save(tmp_path / "new" / "a2.jpg", seed=4)
    assert main([str(tmp_path / "new"), "-o", str(out), "--metadata", *CLI_SMALL], blob_factory) == 0
    rows = [json.loads(line)["file_name"] for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert rows == ["images/a.jpg", "images/a2.jpg", "images/b.jpg", "images/sub/c.jpg"]
    # a row whose files are gone is dropped; a garbled file is refused before any work
    (out / "images" / "a2.jpg").unlink()
    assert main([str(tmp_path / "in" / "a.jpg"), "-o", str(out), "--metadata", *CLI_SMALL], blob_factory) == 0
    assert (out / "metadata.jsonl").read_text() == everything
    (out / "metadata.jsonl").write_text('{"file_name": "images/a.jpg"}\nnot json\n')
    save(tmp_path / "later" / "d.jpg", seed=2)
    capsys.readouterr()
    assert main([str(tmp_path / "later"), "-o", str(out), "--metadata", *CLI_SMALL], blob_factory) == 2
    assert "metadata.jsonl line 1 is not a metadata row" in capsys.readouterr().err
    assert not (out / "d.png").exists()


# 3. two runs into one output -------------------------------------------------------------------
def test_a_second_run_into_the_same_output_refuses_at_once_and_the_first_finishes(tmp_path, capsys):
    for index in range(12):
        save(tmp_path / "in" / f"{index:02d}.jpg", seed=index % 5)
    out = tmp_path / "out"
    code = f"""
        import sys
        from render_fakes import slow_factory
        from dwpose_ctrl.cli import main
        sys.exit(main({[str(tmp_path / "in"), "-o", str(out), "--json", *CLI_SMALL]!r},
                      estimator_factory=lambda: slow_factory(0.1)))
    """
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"}
    first = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("*.png")) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        assert list(out.glob("*.png")), "the first run wrote nothing"
        started = time.monotonic()
        assert main([str(tmp_path / "in"), "-o", str(out), *CLI_SMALL], blob_factory) == 2
        assert time.monotonic() - started < 5
        assert "another dwpose-render is writing into" in capsys.readouterr().err
        assert first.wait(timeout=60) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert len(files(out)) == 24 and not list(out.rglob(f"*{PARTIAL_SUFFIX}"))


# 5. a file and a folder with one output name ---------------------------------------------------------
def test_a_file_and_a_folder_with_the_same_output_name_both_render(tmp_path):
    save(tmp_path / "in" / "c.jpg")
    save(tmp_path / "in" / "c.png" / "x.jpg", seed=1)
    report = run([tmp_path / "in"], tmp_path / "out")
    assert report.exit_code == 0 and report.counts["done"] == 2
    assert files(tmp_path / "out") == ["c.jpg.png", "c.png/x.jpg.png"]
    assert run([tmp_path / "in"], tmp_path / "out").counts["skipped"] == 2


def test_a_folder_under_an_output_name_is_not_an_output(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    report = run([tmp_path / "in"], tmp_path / "out")
    assert report.counts["skipped"] == 0 and report.counts["failed"] == 1


def test_photo_copies_of_the_same_relative_path_from_two_roots_get_distinct_names(tmp_path):
    save(tmp_path / "one" / "x.jpg")
    save(tmp_path / "two" / "x.jpg", seed=1)
    report = run([tmp_path / "one", tmp_path / "two"], tmp_path / "out", metadata=True)
    assert report.exit_code == 0 and report.counts["done"] == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    copies = {(tmp_path / "out" / row["file_name"]).read_bytes() for row in rows}
    assert copies == {(tmp_path / root / "x.jpg").read_bytes() for root in ("one", "two")}


# 6. file modes --------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_a_plain_open_gives(tmp_path, umask):
    save(tmp_path / "in" / "a.jpg")
    previous = os.umask(umask)
    try:
        run([tmp_path / "in"], tmp_path / "out", json=True, overlay=True, metadata=True)
        expected = 0o666 & ~umask
        modes = {
            name: stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) for name in files(tmp_path / "out")
        }
        assert len(modes) == 5 and set(modes.values()) == {expected}, modes
        (tmp_path / "out" / "a.png").chmod(0o640)  # replacing a file keeps its mode, as open() would
        render_files(
            [str(tmp_path / "in")],
            str(tmp_path / "out"),
            blob_factory,
            JobSettings(render=SMALL),
            overwrite=True,
        )
        assert stat.S_IMODE((tmp_path / "out" / "a.png").stat().st_mode) == 0o640
    finally:
        os.umask(previous)


# 8. FIFOs, devices and interrupts ---------------------------------------------------------------
def test_fifos_and_devices_are_refused_without_blocking(tmp_path):
    folder = tmp_path / "in"
    save(folder / "good.jpg")
    os.mkfifo(folder / "p.jpg")
    os.mkfifo(folder / "good.txt")  # a FIFO as the caption of good.jpg
    os.symlink("/dev/zero", folder / "zero.png")
    os.mkfifo(tmp_path / "named.jpg")
    code = f"""
        import json
        from render_fakes import blob_factory
        from dwpose_ctrl.engines import JobSettings, OutputOptions, render_files
        report = render_files({[str(folder), str(tmp_path / "named.jpg")]!r}, {str(tmp_path / "out")!r},
                              blob_factory, JobSettings(outputs=OutputOptions(metadata=True)))
        print(json.dumps({{r.location.rsplit("/", 1)[-1]: [r.status, r.reason] for r in report.results}}))
    """
    result = python_child(code, timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["good.jpg"] == ["done", ""]
    assert outcome["p.jpg"][1] == "not a regular file (a FIFO (named pipe)); only regular files are read"
    assert outcome["named.jpg"][1] == outcome["p.jpg"][1]
    assert outcome["zero.png"][1] == "not a regular file (a character device); only regular files are read"


def test_a_second_sigterm_aborts_at_once(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    marker = tmp_path / "estimating"
    code = f"""
        import pathlib, sys, time
        from render_fakes import BlobEstimator
        from dwpose_ctrl.cli import main

        class Stuck(BlobEstimator):
            def estimate(self, image, scale=1.0):
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(30)
                return []

        sys.exit(main({[str(tmp_path / "in"), "-o", str(tmp_path / "out"), *CLI_SMALL]!r}, Stuck))
    """
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        assert marker.exists(), process.stderr.read()
        process.send_signal(signal.SIGTERM)  # inside the 30 s estimate: "stopping after this item"
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)  # the second one aborts now
        assert process.wait(timeout=10) == 130
        assert "aborted" in process.stderr.read()
    finally:
        process.kill()
        process.wait()


# 9. huge files ------------------------------------------------------------------------------
def test_a_huge_file_is_refused_from_its_header_within_a_memory_limit(tmp_path):
    folder = tmp_path / "in"
    save(folder / "good.jpg")
    huge = folder / "huge.jpg"
    huge.write_bytes((folder / "good.jpg").read_bytes())
    os.truncate(huge, 3 * 1024**3)  # a real 128x96 JPEG, then 3 GB of (sparse) zeros
    limit = 1536 * 1024**2  # address space: the 3 GB read cannot fit
    code = f"""
        import json, resource
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
        from render_fakes import blob_factory
        from dwpose_ctrl.engines import render_files
        report = render_files([{str(folder)!r}], {str(tmp_path / "out")!r}, blob_factory)
        print(json.dumps({{r.location.rsplit("/", 1)[-1]: [r.status, r.reason] for r in report.results}}))
    """
    result = python_child(code, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["good.jpg"] == ["done", ""]
    assert outcome["huge.jpg"][0] == "failed"
    assert "more than a 128x96 image needs" in outcome["huge.jpg"][1]


# 11. deep trees ---------------------------------------------------------------------------
@pytest.fixture
def low_recursion_limit():
    """A recursion limit of 400, so a 600-deep tree shows what a 1100-deep one does at the default
    1000, without leaving a tree too deep for pytest's own (recursive) clean-up."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    yield
    sys.setrecursionlimit(previous)


def test_a_tree_deeper_than_the_recursion_limit_is_rendered(tmp_path, low_recursion_limit):
    top = tmp_path / "in"
    top.mkdir()
    path = str(top)
    for _ in range(600):
        path = os.path.join(path, "d")
        os.mkdir(path)
    save(top / "top.jpg")
    save(Path(path) / "bottom.jpg", seed=1)
    first = run([top], tmp_path / "out")  # os.walk and os.makedirs recurse once per level
    assert first.counts["done"] == 2 and first.exit_code == 0
    assert run([top], tmp_path / "out").counts["skipped"] == 2  # the stale-file sweep walks it too
    _, problems = discover([f"{top}/**/*.jpg"])  # glob recurses too: a problem, not a crash
    assert problems == [] or problems[0].reason.startswith("folders nested too deep")


# 14. silent no-ops -----------------------------------------------------------------------------
def test_input_inside_the_output_says_so_and_exits_1(tmp_path, capsys):
    save(tmp_path / "photos" / "a.jpg")
    save(tmp_path / "photos" / "sub" / "b.jpg", seed=1)
    for output in (tmp_path / "photos", tmp_path):  # input == output; -o . above the input
        assert main([str(tmp_path / "photos"), "-o", str(output), *CLI_SMALL], blob_factory) == 1
        assert "inside the output folder, which is never read as input" in capsys.readouterr().err
    assert files(tmp_path / "photos") == ["a.jpg", "sub/b.jpg"]


def test_a_file_named_inside_the_output_is_tried(tmp_path, capsys):
    out = tmp_path / "out"
    save(out / "incoming" / "new.jpg")
    assert main([str(out / "incoming" / "new.jpg"), "-o", str(out), *CLI_SMALL], blob_factory) == 0
    assert (out / "new.png").is_file()
    # a named file that is its own output is refused, never silently skipped or replaced
    before = (out / "new.png").read_bytes()
    assert main([str(out / "new.png"), "-o", str(out), *CLI_SMALL], blob_factory) == 1
    assert "would replace an input file" in capsys.readouterr().err
    assert (out / "new.png").read_bytes() == before


def test_nothing_to_render_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    assert main([str(tmp_path / "empty"), "-o", str(tmp_path / "out"), *CLI_SMALL], blob_factory) == 1
    assert "no image or video file found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# 18. checked up front -------------------------------------------------------------------------
def test_an_unwritable_report_is_refused_before_any_work(tmp_path, capsys):
    save(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    for report in (tmp_path / "missing" / "r.json", tmp_path / "in"):
        assert (
            main([str(tmp_path / "in"), "-o", str(out), "--report", str(report), *CLI_SMALL], blob_factory)
            == 2
        )
        assert "report" in capsys.readouterr().err
        assert not out.exists()


def test_bad_smoothing_options_stop_the_run_before_any_item(tmp_path, capsys):
    save(tmp_path / "in" / "a.jpg")
    out = tmp_path / "out"
    for option in (["--smooth-min-cutoff", "0"], ["--smooth-beta", "-1"], ["--smooth-min-cutoff", "nan"]):
        assert (
            main([str(tmp_path / "in"), "-o", str(out), "--smooth", *option, *CLI_SMALL], blob_factory) == 2
        )
        assert option[0] in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="beta >= 0"):
        Smoothing(beta=-0.5)


def test_quantisation_calibration_folders_skip_fifos_and_walk_any_depth(tmp_path, low_recursion_limit):
    pytest.importorskip("onnxruntime")
    from dwpose_ctrl.quantize import image_files

    save(tmp_path / "calib" / "a.jpg")
    os.mkfifo(tmp_path / "calib" / "p.jpg")
    path = str(tmp_path / "calib")
    for _ in range(600):
        path = os.path.join(path, "d")
        os.mkdir(path)
    save(Path(path) / "deep.png", seed=1)
    found = image_files([tmp_path / "calib"])
    assert [p.name for p in found] == ["a.jpg", "deep.png"]


def test_bad_render_settings_are_refused_when_made_not_per_item(tmp_path):
    for settings in ({"detect_resolution": 0}, {"image_resolution": "512"}, {"detect_resolution": True}):
        with pytest.raises(ValueError, match="must be a positive integer or None"):
            RenderSettings(**settings)
    with pytest.raises(TypeError, match="include_body must be True or False"):
        RenderSettings(include_body="no")
    numpy_settings = RenderSettings(detect_resolution=np.int64(256), include_hand=np.bool_(False))
    assert numpy_settings.detect_resolution == 256


def test_the_stale_file_sweep_leaves_temporary_files_of_live_processes(tmp_path):
    save(tmp_path / "in" / "a.jpg")
    sub = tmp_path / "out" / "nested"  # another run may write into a folder inside this output
    sub.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    try:
        alive = sub / f".b.png.{sleeper.pid}-0123abcd{PARTIAL_SUFFIX}"
        dead = sub / f".c.png.{int(finished.stdout)}-4567cdef{PARTIAL_SUFFIX}"
        legacy = sub / f".d.png.x1y2z3{PARTIAL_SUFFIX}"
        for path in (alive, dead, legacy):
            path.write_bytes(b"half")
        assert run([tmp_path / "in"], tmp_path / "out").counts["done"] == 1
        assert alive.exists() and not dead.exists() and not legacy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
