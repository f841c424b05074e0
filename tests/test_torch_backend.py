"""Torch backend: same outputs and keypoints as onnxruntime on the same weights, devices and dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import require_asset
from PIL import Image

from dwpose_ctrl.codec import decode_simcc
from dwpose_ctrl.models import (
    TorchBackend,
    build_rtmpose,
    export_onnx,
    export_safetensors,
    fuse_batchnorm,
    load_state_dict,
    load_torch_backend,
)
from dwpose_ctrl.runtime import Backend, OnnxBackend
from dwpose_ctrl.topdown import build_crops

# The top two SimCC bins of the random-weight model can be closer than float rounding between
# runtimes; argmax agreement is required wherever they are further apart than this.
TIE_MARGIN = 1e-4


@pytest.fixture(scope="module")
def fixture_model() -> torch.nn.Module:
    """The mmpose-made RTMPose-t (random weights, randomised BatchNorm statistics)."""
    model = build_rtmpose("t", (256, 192))
    model.load_state_dict(load_state_dict(require_asset("fixtures/rtmpose-t_256x192_mmpose_random.pth")))
    return model.eval()


@pytest.fixture(scope="module")
def pose_onnx(fixture_model, tmp_path_factory):
    return export_onnx(fixture_model, tmp_path_factory.mktemp("pose") / "rtmpose-t.onnx")


@pytest.fixture(scope="module")
def val5_crops(val5_dir) -> np.ndarray:
    """Normalised 256x192 crops of every annotated person of the val5 images (ground-truth boxes)."""
    annotations = json.loads((val5_dir / "annotations.json").read_text())
    batches = []
    for image_info in annotations["images"]:
        boxes = [a["bbox"] for a in annotations["annotations"] if a["image_id"] == image_info["id"]]
        if not boxes:
            continue
        xywh = np.array(boxes, dtype=np.float64)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        image = np.asarray(Image.open(val5_dir / image_info["file_name"]).convert("RGB"))
        batches.append(build_crops(image, xyxy, (256, 192)).inputs)
    return np.concatenate(batches)


def _agreeing_argmax(reference: np.ndarray, ours: np.ndarray) -> tuple[int, int]:
    """(decisive bins, of which agreeing): bins whose reference top-2 gap exceeds TIE_MARGIN."""
    top2 = np.sort(reference, axis=-1)[..., -2:]
    decisive = (top2[..., 1] - top2[..., 0]) > TIE_MARGIN
    same = reference.argmax(-1) == ours.argmax(-1)
    return int(decisive.sum()), int((same & decisive).sum())


def test_torch_backend_gives_the_same_argmax_keypoints_as_onnxruntime(pose_onnx, val5_crops):
    backend = load_torch_backend(pose_onnx, role="pose")
    assert isinstance(backend, Backend)
    assert (backend.input_size, backend.dynamic_batch, backend.device) == ((256, 192), True, "cpu")
    ours = backend.run(val5_crops)
    reference = OnnxBackend(pose_onnx).run(val5_crops)
    assert [o.dtype for o in ours] == [np.float32, np.float32]
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours, reference, strict=True)) <= 1e-4
    for axis in range(2):
        decisive, agreeing = _agreeing_argmax(reference[axis], ours[axis])
        assert decisive >= 0.95 * reference[axis][..., 0].size
        assert agreeing == decisive
    ours_locations, _ = decode_simcc(*ours)
    reference_locations, _ = decode_simcc(*reference)
    assert np.mean(np.all(ours_locations == reference_locations, axis=-1)) >= 0.95


def test_every_weight_format_loads_into_the_same_backend(fixture_model, pose_onnx, tmp_path, val5_crops):
    checkpoint = tmp_path / "t.pth"
    torch.save({"state_dict": fixture_model.state_dict()}, checkpoint)
    safetensors_path = export_safetensors(fixture_model, tmp_path / "t.safetensors")
    batch = val5_crops[:4]
    outputs = [
        load_torch_backend(path, "pose").run(batch) for path in (pose_onnx, checkpoint, safetensors_path)
    ]
    for other in outputs[1:]:
        assert max(float(np.abs(a - b).max()) for a, b in zip(outputs[0], other, strict=True)) <= 1e-4


def test_batching_gives_the_same_numbers_as_one_by_one(pose_onnx, val5_crops):
    backend = load_torch_backend(pose_onnx, "pose")
    together = backend.run(val5_crops[:5])
    apart = [backend.run(val5_crops[i : i + 1]) for i in range(5)]
    for axis in range(2):
        stacked = np.concatenate([item[axis] for item in apart])
        assert np.abs(together[axis] - stacked).max() <= 1e-5


def test_fused_batchnorm_keeps_the_outputs(fixture_model, val5_crops):
    import copy

    fused = fuse_batchnorm(copy.deepcopy(fixture_model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        batch = torch.from_numpy(val5_crops[:2])
        assert torch.allclose(fused(batch)[0], fixture_model(batch)[0], atol=1e-4)


def test_detector_facade_gives_the_same_keypoints_on_both_backends(yolox_nano_path, pose_onnx, val5_dir):
    from dwpose_ctrl.detector import DWposeDetector

    image = np.asarray(Image.open(val5_dir / "000000001000.jpg").convert("RGB"))  # 12 persons found
    results = {}
    for backend in ("onnxruntime", "torch"):
        detector = DWposeDetector(det_model=yolox_nano_path, pose_model=pose_onnx, backend=backend)
        results[backend] = detector.estimate_array(image)
    reference, ours = results["onnxruntime"], results["torch"]
    assert len(reference) == len(ours) >= 10
    np.testing.assert_allclose(ours.boxes, reference.boxes, atol=0.05)
    same = np.all(np.abs(ours.keypoints - reference.keypoints) < 1e-3, axis=-1)
    assert same.mean() >= 0.95
    np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-4)


def test_bad_requests_are_refused_clearly(yolox_nano_path, pose_onnx):
    with pytest.raises(ValueError, match="role='pose' needs a RTMPose"):
        load_torch_backend(yolox_nano_path, "pose")
    with pytest.raises(ValueError, match="role must be"):
        load_torch_backend(pose_onnx, "segmenter")
    backend = load_torch_backend(pose_onnx, "pose")
    with pytest.raises(ValueError, match=r"\(N, 3, 256, 192\)"):
        backend.run(np.zeros((1, 3, 384, 288), np.float32))
    with pytest.raises(TypeError):
        backend.run(torch.zeros(1, 3, 256, 192))
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        backend.to("cpu", "float16")
    with pytest.raises(ValueError, match="unsupported dtype"):
        backend.to("cpu", "int8")
    with pytest.raises(TypeError):
        TorchBackend(torch.nn.Identity())


def test_bfloat16_on_the_cpu_returns_float32_close_to_float32(pose_onnx, val5_crops):
    backend = load_torch_backend(pose_onnx, "pose")
    reference = backend.run(val5_crops[:2])
    backend.to("cpu", "bfloat16")
    assert backend.dtype == torch.bfloat16
    assert backend.model.backbone.stem[0].conv.weight.dtype == torch.bfloat16
    assert backend.model.head.gau.uv.weight.dtype == torch.float32  # norms and attention stay float32
    low = backend.run(val5_crops[:2])
    assert low[0].dtype == np.float32
    assert np.abs(low[0] - reference[0]).max() <= 0.1 * np.abs(reference[0]).max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and a GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_backend_matches_the_cpu(pose_onnx, yolox_nano_path, val5_crops, dtype):
    cpu = load_torch_backend(pose_onnx, "pose").run(val5_crops)
    gpu_backend = load_torch_backend(pose_onnx, "pose", device="cuda", dtype=dtype)
    assert gpu_backend.device == "cuda:0"
    gpu = gpu_backend.run(val5_crops)
    tolerance = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 1e-1}[dtype]
    scale = max(float(np.abs(cpu[0]).max()), 1.0)
    for axis in range(2):
        assert gpu[axis].dtype == np.float32
        assert np.abs(gpu[axis] - cpu[axis]).max() <= tolerance * scale
    detector = load_torch_backend(yolox_nano_path, "detector", device="cuda", dtype=dtype)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 416, 416)).astype(np.float32)
    reference = load_torch_backend(yolox_nano_path, "detector").run(batch)[0]
    assert np.abs(detector.run(batch)[0][..., 4:] - reference[..., 4:]).max() <= 5 * tolerance
    assert gpu_backend.to("cpu").device == "cpu" and gpu_backend.dtype != torch.float16
