"""The speed-ups around the networks give exactly the numbers of the plain computations they replace."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dwpose_ctrl.person_detection import letterbox
from dwpose_ctrl.topdown import PIXEL_MEAN, PIXEL_STD, build_crops, normalise, warp_matrix


def _plain_normalise(crop: np.ndarray) -> np.ndarray:
    return ((crop - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1).astype(np.float32)


def test_normalise_table_equals_the_float64_arithmetic_for_every_uint8_value():
    values = np.arange(256, dtype=np.uint8)
    crop = np.stack([values, np.roll(values, 85), np.roll(values, 170)], axis=-1).reshape(16, 16, 3)
    np.testing.assert_array_equal(normalise(crop), _plain_normalise(crop))


def test_normalise_of_other_dtypes_keeps_the_arithmetic():
    crop = np.random.default_rng(0).uniform(0, 255, (5, 4, 3))
    np.testing.assert_array_equal(normalise(crop), _plain_normalise(crop))


def test_normalise_writes_into_out():
    crop = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    out = np.full((3, 8, 6), np.nan, dtype=np.float32)
    assert normalise(crop, out=out) is out
    np.testing.assert_array_equal(out, _plain_normalise(crop))


def test_build_crops_matches_plain_crop_and_normalise():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    boxes = np.array([[5.0, 10.0, 60.0, 100.0], [-20.0, 30.0, 80.0, 140.0]])
    crops = build_crops(image, boxes, (64, 48))
    for index in range(len(boxes)):
        center, scale = crops.centers[index], crops.scales[index]
        plain = cv2.warpAffine(image, warp_matrix(center, scale, (48, 64)), (48, 64), flags=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(crops.inputs[index], _plain_normalise(plain))


def test_onnx_backend_runs_large_cpu_batches_in_chunks_with_the_same_outputs(tmp_path):
    from onnx_graphs import pose_like

    from dwpose_ctrl.runtime import CPU_MAX_BATCH, OnnxBackend

    model = pose_like(tmp_path / "pose.onnx", input_size=(32, 24))
    batch = np.random.default_rng(4).standard_normal((7, 3, 32, 24)).astype(np.float32)
    whole = OnnxBackend(model, max_batch=None).run(batch)
    chunked_backend = OnnxBackend(model, max_batch=3)
    calls = []
    run = chunked_backend.session.run
    chunked_backend.session.run = lambda names, feed: (
        calls.append(len(next(iter(feed.values())))) or run(names, feed)
    )
    chunked = chunked_backend.run(batch)
    assert calls == [3, 3, 1]
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)
    assert OnnxBackend(model).max_batch == CPU_MAX_BATCH
    with pytest.raises(ValueError, match="max_batch"):
        OnnxBackend(model, max_batch=0)


def test_onnx_backend_io_binding_gives_the_plain_run_outputs(tmp_path):
    from onnx_graphs import pose_like

    from dwpose_ctrl.runtime import OnnxBackend

    model = pose_like(tmp_path / "pose.onnx", input_size=(32, 24))
    batch = np.random.default_rng(6).standard_normal((5, 3, 32, 24)).astype(np.float32)
    plain = OnnxBackend(model, max_batch=None, io_binding=False)
    bound = OnnxBackend(model, max_batch=2, io_binding=True)
    calls = []
    run_with_iobinding = bound.session.run_with_iobinding
    bound.session.run_with_iobinding = lambda binding: calls.append(1) or run_with_iobinding(binding)
    bound.session.run = None  # the bound path must not fall back to session.run
    expected, outputs = plain.run(batch), bound.run(batch)
    assert len(calls) == 3 and bound.uses_io_binding and not plain.uses_io_binding
    assert [o.shape for o in outputs] == [(5, 133, 48), (5, 133, 64)]
    for a, b in zip(expected, outputs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_onnx_backend_io_binding_is_automatic_on_cuda_only(tmp_path):
    from onnx_graphs import pose_like

    from dwpose_ctrl.runtime import OnnxBackend

    model = pose_like(tmp_path / "pose.onnx", input_size=(32, 24))
    assert OnnxBackend(model).uses_io_binding is False
    with pytest.raises(ValueError, match="io_binding must be True, False or 'auto'"):
        OnnxBackend(model, io_binding="yes")


def test_onnx_backend_on_cuda_binds_outputs_on_its_device(tmp_path):
    from dwpose_ctrl.runtime import OnnxBackend

    class Binding:
        def __init__(self):
            self.calls = []

        def bind_cpu_input(self, name, array):
            self.calls.append(("input", name, array.shape))

        def bind_output(self, name, kind, index):
            self.calls.append(("output", name, kind, index))

        def copy_outputs_to_cpu(self):
            return [np.ones(1), np.zeros(1)]

    binding = Binding()

    class Session:
        def io_binding(self):
            return binding

        def run_with_iobinding(self, bound):
            assert bound is binding
            binding.calls.append(("run",))

        def get_inputs(self):
            return [type("Input", (), {"name": "input"})]

        def get_outputs(self):
            return [type("Output", (), {"name": name}) for name in ("simcc_x", "simcc_y")]

    backend = OnnxBackend(tmp_path / "unused.onnx", device="cuda:1")
    backend._session = Session()
    assert backend.device == "cuda:1" and backend.uses_io_binding and backend.max_batch is None
    outputs = backend.run(np.zeros((2, 3, 8, 6), np.float32))
    assert binding.calls == [
        ("input", "input", (2, 3, 8, 6)),
        ("output", "simcc_x", "cuda", 1),
        ("output", "simcc_y", "cuda", 1),
        ("run",),
    ]
    assert [o.tolist() for o in outputs] == [[1.0], [0.0]]


def test_onnx_backend_on_cpu_plans_no_memory_pattern(tmp_path):
    from onnx_graphs import pose_like

    from dwpose_ctrl.runtime import OnnxBackend

    backend = OnnxBackend(pose_like(tmp_path / "pose.onnx", input_size=(32, 24)))
    assert backend.session.get_session_options().enable_mem_pattern is False


def test_cpu_sessions_share_one_arena_and_give_the_plain_sessions_outputs(tmp_path):
    import onnxruntime as ort
    from onnx_graphs import pose_like

    from dwpose_ctrl import runtime

    small = pose_like(tmp_path / "small.onnx", input_size=(32, 24))
    large = pose_like(tmp_path / "large.onnx", input_size=(64, 48))
    rng = np.random.default_rng(5)
    for model, shape in ((small, (3, 3, 32, 24)), (large, (2, 3, 64, 48))):
        backend = runtime.OnnxBackend(model)
        options = backend.session.get_session_options()
        assert options.get_session_config_entry("session.use_env_allocators") == "1"
        batch = rng.standard_normal(shape).astype(np.float32)
        plain = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        expected = plain.run(None, {plain.get_inputs()[0].name: batch})
        for a, b in zip(backend.run(batch), expected, strict=True):
            np.testing.assert_array_equal(a, b)
    assert runtime.shared_cpu_arena() is True


def test_sessions_keep_their_own_arenas_when_the_shared_one_is_refused(tmp_path, monkeypatch):
    import onnxruntime as ort
    from onnx_graphs import pose_like

    from dwpose_ctrl import runtime

    def refuse(*args):
        raise RuntimeError("an allocator for this device is already registered")

    monkeypatch.setattr(runtime, "_shared_arena_registered", None)
    monkeypatch.setattr(ort, "create_and_register_allocator", refuse)
    backend = runtime.OnnxBackend(pose_like(tmp_path / "pose.onnx", input_size=(32, 24)))
    with pytest.warns(RuntimeWarning, match="shared CPU arena.*already registered"):
        options = backend.session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        options.get_session_config_entry("session.use_env_allocators")
    assert backend.run(np.zeros((1, 3, 32, 24), np.float32))[0].shape[0] == 1


def test_release_freed_heap_returns_pages_to_the_os_on_glibc():
    import sys

    from dwpose_ctrl import runtime

    if not sys.platform.startswith("linux") or runtime._malloc_trim is None:
        pytest.skip("malloc_trim is glibc's")

    def resident_kib() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    # Many small blocks (below glibc's mmap threshold) live on the heap; freeing them leaves the
    # pages with the process until the heap is trimmed.
    blocks = [bytearray(64 * 1024) for _ in range(2048)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])
    before_free = resident_kib()
    del blocks
    runtime.release_freed_heap()
    assert resident_kib() < before_free - 64 * 1024


def test_letterbox_reversing_channels_equals_letterboxing_the_reversed_image():
    image = np.random.default_rng(3).integers(0, 256, (77, 131, 3), dtype=np.uint8)
    for size in ((64, 64), (96, 64)):
        reversed_first, ratio_first = letterbox(np.ascontiguousarray(image[:, :, ::-1]), size)
        reversed_inside, ratio_inside = letterbox(image, size, reverse_channels=True)
        assert ratio_first == ratio_inside
        np.testing.assert_array_equal(reversed_inside, reversed_first)
        assert reversed_inside.flags.c_contiguous and reversed_inside.dtype == np.float32
