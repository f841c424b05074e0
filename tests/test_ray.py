"""Object storage (s3:// on a local moto server) and the Ray Data engine against the local engine."""

from __future__ import annotations

import os
import re
import socket
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from render_fakes import BlobEstimator, blob_boxes, blob_factory, blob_image, broken_factory, person_in_box

from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, Storage, render_files
from dwpose_ctrl.engines.report import EngineError
from dwpose_ctrl.video import VideoWriter

JOB = JobSettings(
    render=RenderSettings(detect_resolution=128, image_resolution=128),
    outputs=OutputOptions(json=True, overlay=True, frames=True, video_codec="ffv1"),
)
BUCKET = "dwpose-test"


def make_inputs(folder: Path) -> Path:
    for index in range(5):
        path = folder / f"set{index % 2}" / f"photo {index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(
            blob_image(96, 128, [(8 + 6 * index, 10, 30, 60), (90, 20, 20, 50)], seed=index)
        ).save(path)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    writer = VideoWriter(
        str(folder / "clip.mp4"), "libx264", "yuv420p", 128, 96, Fraction(1, 25), Fraction(25)
    )
    for index in range(4):
        writer.write(blob_image(96, 128, [(10 + 5 * index, 10, 30, 60)], seed=index), index)
    writer.close()
    return folder


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outcome(report) -> list[tuple[str, str, str]]:
    return [(Path(r.location).name, r.status, r.reason) for r in report.results]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def local_outputs(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    report = render_files([str(inputs)], str(out), blob_factory, JOB)
    assert report.counts == {"done": 6, "skipped": 0, "failed": 1, "interrupted": 0}
    return out, report


# S3 through fsspec on a local moto server --------------------------------------------------------
@pytest.fixture(scope="module")
def s3_storage():
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
        "use_listings_cache": False,
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    storage = Storage(options)
    yield storage
    server.stop()


def upload(storage: Storage, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            storage.write_bytes(
                f"s3://{BUCKET}/{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes()
            )


def download(storage: Storage, prefix: str) -> dict[str, bytes]:
    root = f"s3://{BUCKET}/{prefix}/"
    return {url.removeprefix(root): storage.read_bytes(url) for url in storage.list_files(root.rstrip("/"))}


def test_s3_inputs_and_outputs_equal_local_ones_and_resume(s3_storage, inputs, local_outputs):
    local_out, local_report = local_outputs
    upload(s3_storage, inputs, "in")
    report = render_files([f"s3://{BUCKET}/in"], f"s3://{BUCKET}/out", blob_factory, JOB, storage=s3_storage)
    assert report.counts == local_report.counts
    assert [(name, status) for name, status, _ in outcome(report)] == [
        (name, status) for name, status, _ in outcome(local_report)
    ]
    assert download(s3_storage, "out") == tree(local_out)
    again = render_files([f"s3://{BUCKET}/in"], f"s3://{BUCKET}/out", blob_factory, JOB, storage=s3_storage)
    assert again.counts == {"done": 0, "skipped": 6, "failed": 1, "interrupted": 0}


def test_s3_output_prefix_inside_the_input_prefix_is_never_read(s3_storage, inputs):
    upload(s3_storage, inputs / "set0", "nested")
    output = f"s3://{BUCKET}/nested/maps"
    first = render_files([f"s3://{BUCKET}/nested"], output, blob_factory, JOB, storage=s3_storage)
    second = render_files([f"s3://{BUCKET}/nested"], output, blob_factory, JOB, storage=s3_storage)
    assert first.counts["done"] == 3
    assert second.counts == {"done": 0, "skipped": 3, "failed": 0, "interrupted": 0}


def test_s3_missing_prefix_is_reported(s3_storage):
    report = render_files(
        [f"s3://{BUCKET}/nothing-here"], f"s3://{BUCKET}/o", blob_factory, JOB, storage=s3_storage
    )
    assert [(status, reason) for _, status, reason in outcome(report)] == [
        ("failed", "no such file or folder")
    ]


def test_s3_overwrite_with_a_shorter_video_leaves_no_frame_of_the_old_one(s3_storage, tmp_path):
    def clip(count: int) -> Path:
        path = tmp_path / "clip.mkv"
        writer = VideoWriter(str(path), "ffv1", "bgr0", 64, 48, Fraction(1, 25), Fraction(25))
        for index in range(count):
            writer.write(blob_image(48, 64, [(4 + index, 4, 12, 30)], seed=index), index)
        writer.close()
        return path

    job = JobSettings(render=RenderSettings(None, None), outputs=OutputOptions(json=True, video_codec="ffv1"))
    output = f"s3://{BUCKET}/shorter"
    for count in (5, 2):
        source = str(clip(count))
        report = render_files([source], output, blob_factory, job, storage=s3_storage, overwrite=True)
        assert report.results[0].frames == count
    assert sorted(download(s3_storage, "shorter")) == [
        "clip.json",  # the whole clip as one sequence JSON
        "clip.mkv",
        "clip/000000.json",
        "clip/000001.json",
    ]


def test_remembered_listing_answers_exists_without_requests(s3_storage):
    root = f"s3://{BUCKET}/listing"
    s3_storage.write_bytes(f"{root}/old.png", b"1")
    storage = Storage(s3_storage.options)
    storage.remember_listing(root)
    assert storage.exists(f"{root}/old.png")
    s3_storage.write_bytes(f"{root}/behind-its-back.png", b"2")  # another client: not in the listing
    assert not storage.exists(f"{root}/behind-its-back.png")
    storage.write_bytes(f"{root}/new.png", b"3")  # its own writes keep the listing current
    assert storage.exists(f"{root}/new.png")
    assert Storage(s3_storage.options).exists(f"{root}/behind-its-back.png")


# Ray Data ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    here = Path(__file__).resolve().parent
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": f"{here.parent}{os.pathsep}{here}"}},
    )
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_writes_the_same_files_and_report_as_the_local_engine(
    local_ray, inputs, local_outputs, tmp_path, s3_storage
):
    local_out, local_report = local_outputs
    options = {"workers": 2, "batch_size": 2, "show_progress": False}
    out = tmp_path / "out"
    report = render_files([str(inputs)], str(out), blob_factory, JOB, engine="ray", ray_options=options)
    assert outcome(report) == outcome(local_report)
    assert tree(out) == tree(local_out)
    # resumable: delete one output, the next run redoes just that item
    (out / "set1" / "photo 1.overlay.png").unlink()
    again = render_files([str(inputs)], str(out), blob_factory, JOB, engine="ray", ray_options=options)
    assert again.counts == {"done": 1, "skipped": 5, "failed": 1, "interrupted": 0}
    assert tree(out) == tree(local_out)
    # and from S3 to S3, each worker opening its own filesystem
    upload(s3_storage, inputs, "ray-in")
    on_s3 = render_files(
        [f"s3://{BUCKET}/ray-in"],
        f"s3://{BUCKET}/ray-out",
        blob_factory,
        JOB,
        storage=s3_storage,
        engine="ray",
        ray_options=options,
    )
    assert on_s3.counts == local_report.counts
    assert download(s3_storage, "ray-out") == tree(local_out)
    # a detector that cannot be built stops the run with its reason
    with pytest.raises(EngineError, match="the pose model file is corrupt"):
        render_files(
            [str(inputs)], str(tmp_path / "x"), broken_factory, JOB, engine="ray", ray_options=options
        )


def test_ray_actor_builds_one_estimator_and_maps_a_batch(inputs, tmp_path):
    import pickle

    from dwpose_ctrl.engines import discover, plan
    from dwpose_ctrl.engines.ray_engine import RenderActor

    built = []

    def factory():
        built.append(1)
        return blob_factory()

    items = plan(discover([str(inputs)])[0], str(tmp_path / "out"), JOB.outputs)
    actor = RenderActor(factory, JOB, Storage())
    batch = {"index": np.arange(len(items)), "item": np.array([pickle.dumps(i) for i in items], dtype=object)}
    columns = actor(batch)
    assert built == [1]
    assert columns["index"] == list(range(len(items)))
    assert columns["status"] == ["failed", "done", "done", "done", "done", "done", "done"]
    assert columns["frames"][1] == 4  # clip.mp4 sorts after broken.png


@pytest.mark.slow
def test_cli_engine_ray(local_ray, inputs, local_outputs, tmp_path, capsys):
    from dwpose_ctrl.cli import main

    local_out, _ = local_outputs
    out = tmp_path / "out"
    argv = [str(inputs), "-o", str(out), "--engine", "ray", "--ray-workers", "2", "--ray-batch-size", "3"]
    argv += ["--detect-resolution", "128", "--image-resolution", "128", "--json", "--overlay", "--frames"]
    assert main([*argv, "--video-codec", "ffv1", "-q"], estimator_factory=blob_factory) == 1
    err = capsys.readouterr().err
    assert f"FAILED {inputs / 'broken.png'}: not an image" in err and "done 6, skipped 0, failed 1" in err
    assert tree(out) == tree(local_out)


class CountingBlobEstimator(BlobEstimator):
    """A blob estimator with a batched call that records the size of every batch."""

    def __init__(self, delay: float = 0.0):
        super().__init__(delay)
        self.batches: list[int] = []

    def estimate_many(self, images, scales):
        self.batches.append(len(images))
        return [[person_in_box(box) for box in blob_boxes(image)] for image in images]


def test_ray_actor_runs_a_batch_of_images_through_one_network_call(inputs, tmp_path, local_outputs):
    import pickle

    from dwpose_ctrl.engines import discover, plan
    from dwpose_ctrl.engines.ray_engine import RenderActor

    estimator = CountingBlobEstimator()
    items = plan(discover([str(inputs)])[0], str(tmp_path / "out"), JOB.outputs)
    actor = RenderActor(lambda: estimator, JOB, Storage(), frames_per_call=3)
    batch = {"index": np.arange(len(items)), "item": np.array([pickle.dumps(i) for i in items], dtype=object)}
    columns = actor(batch)
    # five photos (the broken one fails while reading) in one call; the video's 4 frames as 3 + 1 alone
    assert estimator.batches == [5, 3] and estimator.calls == 1
    assert columns["status"] == ["failed", "done", "done", "done", "done", "done", "done"]
    assert tree(tmp_path / "out") == tree(local_outputs[0])


def test_resources_give_each_cuda_actor_one_gpu_and_leave_cpu_runs_alone():
    from dwpose_ctrl.engines import DetectorSpec
    from dwpose_ctrl.engines.ray_engine import resolve_resources

    cpu = DetectorSpec(device="cpu")
    assert resolve_resources(cpu, None, None, 4) == (1, 0.0, cpu)
    assert resolve_resources(cpu, 3, None, 4) == (3, 0.0, cpu)
    assert resolve_resources(blob_factory, None, None, 2) == (1, 0.0, blob_factory)
    workers, gpus, factory = resolve_resources(DetectorSpec(device="cuda:1"), None, None, 4)
    assert (workers, gpus, factory.device) == (4, 1.0, "cuda")
    assert resolve_resources(DetectorSpec(device="cuda"), None, 0.5, 2)[:2] == (4, 0.5)
    assert resolve_resources(DetectorSpec(device="cuda"), 2, None, 8)[:2] == (2, 1.0)
    assert resolve_resources(DetectorSpec(device="cuda"), None, None, 0)[:2] == (1, 1.0)


@pytest.mark.slow
def test_ray_batches_of_a_real_detector_equal_the_local_engine_one_at_a_time(
    local_ray, tmp_path, yolox_nano_path, val5_dir
):
    from onnx_graphs import pose_like

    from dwpose_ctrl.engines import DetectorSpec

    folder = tmp_path / "in"
    folder.mkdir()
    photos = [
        np.asarray(Image.open(p).convert("RGB"))[:240, :320] for p in sorted(val5_dir.glob("*.jpg"))[:3]
    ]
    for index, photo in enumerate(photos):
        Image.fromarray(photo).save(folder / f"{index}.png")
    writer = VideoWriter(str(folder / "clip.mkv"), "ffv1", "bgr0", 320, 240, Fraction(1, 25), Fraction(25))
    for index in range(5):
        writer.write(np.ascontiguousarray(np.roll(photos[1], 5 * index, axis=1)), index)
    writer.close()
    pose = pose_like(tmp_path / "pose.onnx", input_size=(64, 48), dynamic=True, seed=5)
    spec = DetectorSpec(det_model=str(yolox_nano_path), pose_model=str(pose))
    job = JobSettings(
        render=RenderSettings(detect_resolution=256, image_resolution=256),
        outputs=OutputOptions(json=True, frames=True, video_codec="ffv1"),
    )
    local = render_files([str(folder)], str(tmp_path / "local"), spec, job, batch_size=1)
    options = {"workers": 1, "batch_size": 4, "show_progress": False}
    on_ray = render_files([str(folder)], str(tmp_path / "ray"), spec, job, engine="ray", ray_options=options)
    assert on_ray.counts == local.counts == {"done": 4, "skipped": 0, "failed": 0, "interrupted": 0}
    files = tree(tmp_path / "local")
    # 3 images x (JSON + map), the video's map video, 5 frames x (JSON + map), its sequence JSON
    assert tree(tmp_path / "ray") == files and len(files) == 3 * 2 + 1 + 5 * 2 + 1


@pytest.mark.slow
def test_ray_report_after_a_stop_matches_the_files_on_disk(local_ray, tmp_path):
    import functools
    import threading
    import time

    from render_fakes import GatedEstimator

    from dwpose_ctrl.engines import discover, is_done, plan

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(8):
        Image.fromarray(blob_image(48, 64, [(4 + index, 4, 12, 30)], seed=index)).save(
            folder / f"{index}.png"
        )
    gate = tmp_path / "gate"
    gate.mkdir()
    job = JobSettings(render=RenderSettings(detect_resolution=64, image_resolution=64))
    stop = threading.Event()

    def stop_after_the_first(result) -> None:
        # every other item waits in the estimator until the stop has had time to reach the actors
        if not stop.is_set():
            stop.set()
            time.sleep(2.0)
            (gate / "release").touch()

    report = render_files(
        [str(folder)],
        str(tmp_path / "out"),
        functools.partial(GatedEstimator, str(gate)),
        job,
        engine="ray",
        ray_options={"workers": 2, "batch_size": 1, "show_progress": False},
        stop=stop,
        on_result=stop_after_the_first,
    )
    items = plan(discover([str(folder)])[0], str(tmp_path / "out"), job.outputs)
    statuses = {Path(r.location).name: r.status for r in report.results}
    on_disk = {Path(item.source.location).name for item in items if is_done(item, Storage())}
    # the first item, and at most one item per actor that was already waiting in the estimator
    assert report.interrupted and 1 <= len(on_disk) <= 3
    assert {name for name, status in statuses.items() if status == "done"} == on_disk
    assert report.counts["done"] + report.counts["interrupted"] == 8


@pytest.mark.slow
def test_quiet_ray_run_prints_nothing(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(blob_image(48, 64, [(4, 4, 12, 30)])).save(folder / "a.png")
    here = Path(__file__).resolve().parent
    code = (
        "import sys; from dwpose_ctrl.cli import main; from render_fakes import blob_factory; "
        f"sys.exit(main([{str(folder)!r}, '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray', '-q', "
        "'--ray-cpus-per-worker', '0.5'], estimator_factory=blob_factory))"
    )
    env = {**os.environ, "PYTHONPATH": f"{here.parent}{os.pathsep}{here}", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.png").exists()
    # Ray's C++ core may still log an error-level line of its own (a warning about actor restarts
    # that every Ray Data actor pool gives); nothing else may reach the terminal
    ours = [line for line in done.stderr.splitlines() if not re.match(r"\[[^]]* E \d+ \d+\] ", line)]
    assert ours == [] and done.stdout == ""


@pytest.mark.slow
def test_actors_that_no_node_can_hold_are_refused_at_once(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(blob_image(48, 64, [(4, 4, 12, 30)])).save(folder / "a.png")
    here = Path(__file__).resolve().parent
    code = (
        "import sys, ray; from dwpose_ctrl.cli import main; from render_fakes import blob_factory; "
        "ray.init(num_cpus=1, num_gpus=0, include_dashboard=False); "
        f"sys.exit(main([{str(folder)!r}, '-o', {str(tmp_path / 'out')!r}, '--engine', 'ray', '-q', "
        "'--ray-gpus-per-worker', '1'], estimator_factory=blob_factory))"
    )
    env = {**os.environ, "PYTHONPATH": f"{here.parent}{os.pathsep}{here}", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=150, cwd=tmp_path
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the run waited for a GPU the cluster does not have")
    assert done.returncode == 2
    assert (
        "dwpose-render: error: each actor needs 1 GPU(s) but no node of the Ray cluster has that many "
        "(the largest has 0); lower --ray-gpus-per-worker, use --device cpu, or add nodes that have them"
    ) in done.stderr
