"""Batching across images and pose on given boxes: the same numbers as one image / one box at a time.

onnxruntime on the CPU is bit-identical for a batch and its items run alone (SPEC 12), so every
onnxruntime comparison here is ``np.array_equal``; spies on ``Backend.run`` prove how many runs
were made and with which batch sizes.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx_graphs import pose_like
from PIL import Image

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.engines import DetectorEstimator

POSE_INPUT = (64, 48)


def dynamic_batch_copy(source, target):
    """The official-layout YOLOX-Nano with its batch dimension declared dynamic (its graph computes
    every reshape from the input's shape, so it runs on any batch)."""
    model = onnx.load(source)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    onnx.save(model, target)
    return target


@pytest.fixture(scope="module")
def models(tmp_path_factory, yolox_nano_path):
    folder = tmp_path_factory.mktemp("batching")
    return {
        "det_fixed": yolox_nano_path,
        "det_dynamic": dynamic_batch_copy(yolox_nano_path, folder / "yolox_nano_dynamic.onnx"),
        "pose_dynamic": pose_like(folder / "pose_dynamic.onnx", POSE_INPUT, dynamic=True, seed=7),
        "pose_fixed": pose_like(folder / "pose_fixed.onnx", POSE_INPUT, dynamic=False, seed=7),
    }


@pytest.fixture(scope="module")
def images(val5_dir):
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(val5_dir.glob("*.jpg"))[:3]]
    return [*photos, np.zeros((120, 90, 3), np.uint8)]


def spy_on_runs(backend, monkeypatch) -> list[int]:
    """Record the batch size of every ``run`` of ``backend``."""
    sizes: list[int] = []
    run = backend.run

    def counting_run(batch):
        sizes.append(int(batch.shape[0]))
        return run(batch)

    monkeypatch.setattr(backend, "run", counting_run)
    return sizes


def assert_poses_equal(batched, single):
    assert len(batched) == len(single)
    for one, other in zip(batched, single, strict=True):
        assert np.array_equal(one.keypoints, other.keypoints)
        assert np.array_equal(one.scores, other.scores)
        assert np.array_equal(one.boxes, other.boxes)
        assert one.box_scores == other.box_scores
        assert one.keypoints.dtype == other.keypoints.dtype and one.scores.dtype == other.scores.dtype


@pytest.mark.parametrize("det", ["det_dynamic", "det_fixed"])
@pytest.mark.parametrize("pose", ["pose_dynamic", "pose_fixed"])
@pytest.mark.parametrize("mode", ["default", "reference"])
def test_estimate_arrays_is_bit_identical_to_one_image_at_a_time(
    models, images, det, pose, mode, monkeypatch
):
    detector = DWposeDetector(models[det], models[pose], mode=mode)
    single = [detector.estimate_array(image) for image in images]
    persons = [len(poses) for poses in single]
    assert sum(persons) >= 4 and persons[-1] == (1 if mode == "reference" else 0)
    det_runs = spy_on_runs(detector.det_backend, monkeypatch)
    pose_runs = spy_on_runs(detector.pose_backend, monkeypatch)
    batched = detector.estimate_arrays(images)
    assert_poses_equal(batched, single)
    assert det_runs == ([len(images)] if det == "det_dynamic" else [1] * len(images))
    assert pose_runs == ([sum(persons)] if pose == "pose_dynamic" else [1] * sum(persons))


def test_lists_in_call_and_estimate_equal_single_images(models, images, monkeypatch):
    detector = DWposeDetector(models["det_dynamic"], models["pose_dynamic"])
    maps = [detector(image, output_type="np", include_foot=True) for image in images]
    persons = [detector.estimate(image, detect_resolution=256) for image in images]
    det_runs = spy_on_runs(detector.det_backend, monkeypatch)
    pose_runs = spy_on_runs(detector.pose_backend, monkeypatch)
    for batched, one in zip(detector(images, output_type="np", include_foot=True), maps, strict=True):
        assert np.array_equal(batched, one)
    assert det_runs == [len(images)] and len(pose_runs) == 1
    for batched, one in zip(detector.estimate(images, detect_resolution=256), persons, strict=True):
        assert len(batched) == len(one)
        for a, b in zip(batched, one, strict=True):
            assert np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.scores, b.scores)
            assert np.array_equal(a.box, b.box) and a.box_score == b.box_score
    assert det_runs == [len(images)] * 2 and len(pose_runs) == 2


def test_min_box_sizes_apply_per_image(models, images):
    detector = DWposeDetector(models["det_dynamic"], models["pose_dynamic"])
    everyone = detector.estimate_array(images[1])
    sides = np.sort(np.minimum(*(everyone.boxes[:, 2:] - everyone.boxes[:, :2]).T))
    batched = detector.estimate_arrays([images[1], images[1]], [None, sides[1]])
    assert len(batched[0]) == len(everyone) and len(batched[1]) == len(everyone) - 1
    assert_poses_equal(batched[1:], [detector.estimate_array(images[1], sides[1])])
    with pytest.raises(ValueError, match="one per image"):
        detector.estimate_arrays(images, [None])
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.estimate_arrays([images[0], images[1].astype(np.float32)])
    assert detector.estimate_arrays([]) == []


@pytest.mark.parametrize("pose", ["pose_dynamic", "pose_fixed"])
def test_estimate_boxes_equals_the_detected_path_and_runs_no_detector(models, images, pose, monkeypatch):
    detector = DWposeDetector(models["det_fixed"], models[pose])
    detected = detector.estimate_array(images[1])
    assert len(detected) >= 2
    det_runs = spy_on_runs(detector.det_backend, monkeypatch)
    given = detector.estimate_boxes(images[1], detected.boxes.tolist(), detected.box_scores)
    assert_poses_equal([given], [detected])
    assert det_runs == []
    unscored = detector.estimate_boxes(images[1], detected.boxes[1:2])
    assert unscored.box_scores == (None,)
    assert np.array_equal(unscored.keypoints[0], detected.keypoints[1])
    empty = detector.estimate_boxes(images[1], [])
    assert empty.keypoints.shape == (0, 133, 2) and empty.boxes.shape == (0, 4) and len(empty) == 0


def test_estimate_boxes_refuses_bad_boxes(models, images):
    detector = DWposeDetector(models["det_fixed"], models["pose_dynamic"])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        detector.estimate_boxes(images[0], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        detector.estimate_boxes(images[0], [[0, 0, np.nan, 10]])
    with pytest.raises(ValueError, match="one per box"):
        detector.estimate_boxes(images[0], [[0, 0, 10, 10]], box_scores=[0.5, 0.6])
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.estimate_boxes(images[0][:, :, 0], [[0, 0, 10, 10]])


def test_detector_estimator_batches_and_uses_estimate_boxes(models, images, monkeypatch):
    detector = DWposeDetector(models["det_dynamic"], models["pose_dynamic"], min_box_size=40)
    estimator = DetectorEstimator(detector)
    scales = [1.0, 0.5, 2.0, 1.0]
    single = [estimator.estimate(image, scale) for image, scale in zip(images, scales, strict=True)]
    pose_runs = spy_on_runs(detector.pose_backend, monkeypatch)
    batched = estimator.estimate_many(images, scales)
    assert len(pose_runs) == 1
    for many, one in zip(batched, single, strict=True):
        assert [p.box.tolist() for p in many] == [p.box.tolist() for p in one]
        assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(many, one, strict=True))
    tracked = estimator.estimate_boxes(images[0], [person.box for person in single[0]])
    assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(tracked, single[0], strict=True))
    assert all(person.box_score is None for person in tracked)


@pytest.fixture(scope="module")
def torch_pose_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from dwpose_ctrl.models import build_rtmpose, export_onnx

    torch.manual_seed(0)
    model = build_rtmpose("t", input_size=(256, 192))
    for layer in model.head.modules():  # PyTorch's default init: peaked logits, not mmpose's flat ones
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.reset_parameters()
    return export_onnx(model, tmp_path_factory.mktemp("torch") / "rtmpose_t.onnx")


def test_torch_backend_batched_equals_one_by_one(models, images, torch_pose_onnx, monkeypatch):
    detector = DWposeDetector(models["det_fixed"], torch_pose_onnx, backend="torch")
    images = [images[0], images[2], images[3]]  # 1, 2 and 0 persons: quick on two shared cores
    single = [detector.estimate_array(image) for image in images]
    det_runs = spy_on_runs(detector.det_backend, monkeypatch)
    pose_runs = spy_on_runs(detector.pose_backend, monkeypatch)
    batched = detector.estimate_arrays(images)
    assert det_runs == [len(images)] and pose_runs == [sum(len(poses) for poses in single)] == [3]
    # torch's CPU convolutions may round a batch differently from its items in the last bits (the
    # YOLOX-Nano's raw outputs differ by ~2e-6 on random inputs; RTMPose-t's were equal): boxes agree
    # to float32 rounding and every keypoint lands on the same SimCC bin (a different bin would
    # move it by > 0.1 px)
    for many, one in zip(batched, single, strict=True):
        assert len(many) == len(one)
        np.testing.assert_allclose(many.boxes, one.boxes, rtol=1e-5)
        np.testing.assert_allclose(many.keypoints, one.keypoints, rtol=0, atol=1e-3)
        np.testing.assert_allclose(many.scores, one.scores, rtol=1e-4, atol=1e-5)


# the local render engine ------------------------------------------------------------------------


def tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_local_engine_batches_images_and_writes_the_same_files(tmp_path, models, images, monkeypatch):
    from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, render_files

    folder = tmp_path / "in"
    folder.mkdir()
    for index, image in enumerate([*images, images[1]]):
        Image.fromarray(image).save(folder / f"{index}.png")
    (folder / "3b.png").write_bytes(b"not an image")
    job = JobSettings(render=RenderSettings(detect_resolution=256), outputs=OutputOptions(json=True))
    detector = DWposeDetector(models["det_dynamic"], models["pose_dynamic"])
    det_runs = spy_on_runs(detector.det_backend, monkeypatch)
    reports = {}
    for batch_size in (1, 3):
        reports[batch_size] = render_files(
            [str(folder)],
            str(tmp_path / f"out{batch_size}"),
            lambda: DetectorEstimator(detector),
            job,
            batch_size=batch_size,
        )
    assert tree(tmp_path / "out1") == tree(tmp_path / "out3") and len(tree(tmp_path / "out1")) == 10
    for report in reports.values():
        assert report.counts["done"] == 5 and report.counts["failed"] == 1
    # one image per YOLOX run, then batches of 3 items in name order: 0-2, then 3, 3b (corrupt), 4
    assert det_runs == [1] * 5 + [3, 2]


class BatchFailsEstimator:
    """A blob estimator whose batched call always fails and whose single call fails on black images."""

    keypoint_threshold = 0.3

    def __init__(self):
        from render_fakes import BlobEstimator

        self.blobs = BlobEstimator()
        self.batched_calls = 0

    def estimate(self, image, scale=1.0):
        if image.max() == 0:
            raise ValueError("a black image")
        return self.blobs.estimate(image, scale)

    def estimate_boxes(self, image, boxes):
        return self.blobs.estimate_boxes(image, boxes)

    def estimate_many(self, images, scales):
        self.batched_calls += 1
        raise ValueError("the batch failed")


def test_local_engine_estimates_alone_when_a_batch_fails(tmp_path):
    from render_fakes import blob_factory, blob_image

    from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, render_files

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(blob_image(96, 128, [(10 + index * 7, 10, 30, 60)], seed=index)).save(
            folder / f"{index}.png"
        )
    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(folder / "2b.png")
    job = JobSettings(render=RenderSettings(detect_resolution=128), outputs=OutputOptions(json=True))
    estimator = BatchFailsEstimator()
    report = render_files([str(folder)], str(tmp_path / "out"), lambda: estimator, job, batch_size=5)
    assert estimator.batched_calls == 1
    assert report.counts["done"] == 4 and [f.reason for f in report.failures] == ["a black image"]
    (folder / "2b.png").unlink()
    render_files([str(folder)], str(tmp_path / "alone"), blob_factory, job, batch_size=1)
    assert tree(tmp_path / "out") == tree(tmp_path / "alone")


# videos: frames batched through the networks ----------------------------------------------------


def photo_video(path, images, count: int):
    """A lossless video of ``count`` frames: the photos shifted a little each frame (even sizes)."""
    from fractions import Fraction

    from dwpose_ctrl.video import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    base = images[1][:240, :320]
    writer = VideoWriter(str(path), "ffv1", "bgr0", 320, 240, Fraction(1, 25), Fraction(25))
    for index in range(count):
        writer.write(np.ascontiguousarray(np.roll(base, 4 * index, axis=1)), index)
    writer.close()
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("detect_every", "smooth", "batch"), [(1, False, "dynamic"), (2, True, "dynamic"), (1, False, "fixed")]
)
def test_video_frames_batched_write_the_same_files_as_one_at_a_time(
    tmp_path, models, images, detect_every, smooth, batch, monkeypatch
):
    from dwpose_ctrl.engines import JobSettings, OutputOptions, RenderSettings, Smoothing, render_files

    source = photo_video(tmp_path / "in" / "clip.mkv", images, 6)
    job = JobSettings(
        render=RenderSettings(detect_resolution=256, image_resolution=256),
        outputs=OutputOptions(json=True, frames=True, overlay=True, video_codec="ffv1"),
        detect_every=detect_every,
        smoothing=Smoothing(0.5, 0.1) if smooth else None,
    )
    detector = DWposeDetector(models[f"det_{batch}"], models[f"pose_{batch}"])
    det_runs = spy_on_runs(detector.det_backend, monkeypatch)
    pose_runs = spy_on_runs(detector.pose_backend, monkeypatch)
    runs = {}
    for batch_size in (1, 4):
        del det_runs[:], pose_runs[:]
        report = render_files(
            [str(source)],
            str(tmp_path / f"out{batch_size}"),
            lambda: DetectorEstimator(detector),
            job,
            batch_size=batch_size,
        )
        assert report.counts["done"] == 1 and report.results[0].frames == 6
        runs[batch_size] = (list(det_runs), list(pose_runs))
    files = tree(tmp_path / "out1")
    assert files == tree(tmp_path / "out4") and len(files) == 2 + 6 * 2 + 1  # + clip.json, the whole clip
    assert "clip.json" in files
    people = [len(json.loads(files[f"clip/{i:06d}.json"])["people"]) for i in range(6)]
    assert min(people) >= 2
    if batch == "fixed":
        # models with a batch of 1: one YOLOX run per frame and one pose run per person, batched or not
        assert runs[4] == runs[1] == ([1] * 6, [1] * sum(people))
    elif detect_every == 1:
        # frames 0-3 then 4-5: one YOLOX run and one pose-model run per batch
        assert runs[1][0] == [1] * 6 and runs[4][0] == [4, 2]
        assert runs[4][1] == [sum(people[:4]), sum(people[4:])]
    else:
        # detecting frames 0, 2 | 4 batched; frames 1, 3, 5 follow keypoints (no detection)
        assert runs[1][0] == [1] * 3 and runs[4][0] == [2, 1]
        assert len(runs[4][1]) == 2 + 3 and len(runs[1][1]) == 6
