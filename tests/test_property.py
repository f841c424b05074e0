"""Property: whatever array, list or object is thrown at DWposeDetector, it returns a result or
raises a clear TypeError/ValueError of its own (never a crash deep in OpenCV or onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx_graphs import constant_yolox, peak_pose, simcc_peaks, yolox_grid, yolox_raw
from PIL import Image

import dwpose_ctrl
from dwpose_ctrl import DWposeDetector, Person

PACKAGE = str(Path(dwpose_ctrl.__file__).parent)
DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = tmp_path_factory.mktemp("property")
    cells, strides = yolox_grid((64, 64))
    anchor = int(np.flatnonzero((strides[:, 0] == 16) & (cells[:, 0] == 1) & (cells[:, 1] == 1))[0])
    raw = yolox_raw({anchor: (0.5, 0.5, 0.5, 0.5, 1.0, 0.9)}, (64, 64))
    bins = np.arange(133)
    return DWposeDetector(
        constant_yolox(folder / "det.onnx", raw, (64, 64)),
        peak_pose(folder / "pose.onnx", *simcc_peaks(bins % 64, bins % 96, (48, 32)), input_size=(48, 32)),
    )


def raised_in(error: BaseException) -> str:
    """The file of the innermost frame that raised ``error``."""
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_filename


def arrays():
    shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=40).filter(
        lambda shape: int(np.prod(shape)) <= 40_000
    )
    return st.builds(
        lambda dtype, shape, seed, special: _fill(dtype, shape, seed, special),
        st.sampled_from(DTYPES),
        shapes,
        st.integers(0, 2**32 - 1),
        st.sampled_from(["unit", "wide", "nan", "inf", "zero"]),
    )


def _fill(dtype, shape, seed, special):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f" or dtype.kind == "c":
        values = rng.random(shape) if special in ("unit", "zero") else rng.normal(0, 300, shape)
        if special == "nan" and values.size:
            values.flat[0] = np.nan
        if special == "inf" and values.size:
            values.flat[-1] = np.inf
        return values.astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 70_000), shape, endpoint=True).astype(dtype)


def images():
    """Mostly valid images: HW or HWC (1, 3, 4 channels), uint8 or unit floats, any small size."""
    shapes = st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([(), (1,), (3,), (4,)]))
    return st.builds(
        lambda shape, seed, dtype: _fill(dtype, shape[:2] + shape[2], seed, "unit"),
        shapes,
        st.integers(0, 2**32 - 1),
        st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    )


def tensors():
    """Arrays as torch tensors (CHW-ish shapes included), when torch is installed."""
    try:
        import torch
    except ImportError:
        return st.nothing()
    chw = images().map(lambda a: a.transpose(2, 0, 1) if a.ndim == 3 else a)
    return st.one_of(chw, arrays()).map(lambda a: torch.from_numpy(np.ascontiguousarray(a)))


inputs = st.one_of(
    images(),
    tensors(),
    images().map(lambda a: [a, a[: max(1, a.shape[0] // 2)]]),
    arrays(),
    arrays().map(lambda a: [a]),
    st.builds(lambda a: Image.fromarray(np.zeros((3, 5), np.uint8)) if a else None, st.booleans()),
    st.sampled_from([0, 1.5, "", "not/a/file.png", b"bytes", {"image": 1}, [[1, 2], [3, 4]], object()]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=inputs, resolution=st.sampled_from([None, 64, 100]), output_type=st.sampled_from(["np", "pil"]))
def test_any_input_gives_a_result_or_a_clear_error(detector, image, resolution, output_type):
    try:
        control = detector(
            image, detect_resolution=resolution, image_resolution=resolution, output_type=output_type
        )
        persons = detector.estimate(image, detect_resolution=resolution)
    except (TypeError, ValueError, FileNotFoundError) as error:
        assert str(error), "errors must say what went wrong"
        assert raised_in(error).startswith(PACKAGE), f"raised outside dwpose_ctrl: {raised_in(error)}"
        event(f"refused: {type(error).__name__}")
        return
    event("result")
    controls = control if isinstance(control, list) else [control]
    people = persons if isinstance(control, list) else [persons]
    for item, found in zip(controls, people, strict=True):
        array = np.asarray(item)
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
        assert all(isinstance(person, Person) and np.isfinite(person.keypoints).all() for person in found)
