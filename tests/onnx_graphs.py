"""Small ONNX graphs with known outputs, built with onnx.helper for the inference tests.

- :func:`constant_yolox`: a "YOLOX" whose raw output is a tensor the test chooses.
- :func:`peak_pose`: a "pose model" whose SimCC outputs peak at chosen bins.
- :func:`pose_like`: a small deterministic conv/pool/MatMul network whose SimCC maxima move with
  the image content, in a dynamic-batch and a fixed-batch-1 variant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dwpose_ctrl.keypoints import NUM_KEYPOINTS
from dwpose_ctrl.person_detection import yolox_grid

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


def _zero_of_input(name: str, rank_out: int) -> list[onnx.NodeProto]:
    """Nodes making ``{name}_zero``: 0 * mean(input) of shape (N, 1, ..., 1) with ``rank_out`` dims."""
    nodes = [
        helper.make_node("ReduceMean", [name], [f"{name}_mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", [f"{name}_mean", "zero"], [f"{name}_zeroed"]),
    ]
    if rank_out != 4:
        nodes.append(helper.make_node("Reshape", [f"{name}_zeroed", "zero_shape"], [f"{name}_zero"]))
    else:
        nodes[-1].output[0] = f"{name}_zero"
    return nodes


def _batch_dim(dynamic: bool):
    return "N" if dynamic else 1


def yolox_anchor_count(input_size: tuple[int, int]) -> int:
    return yolox_grid(input_size)[0].shape[0]


def constant_yolox(path: Path, raw: np.ndarray, input_size: tuple[int, int] = (64, 64)) -> Path:
    """A detector graph: input ``images`` (1, 3, H, W), output ``output`` = ``raw`` (1, A, 5 + C)."""
    height, width = input_size
    raw = np.asarray(raw, dtype=np.float32).reshape(1, yolox_anchor_count(input_size), -1)
    initializers = [
        numpy_helper.from_array(raw, "raw"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), "zero_shape"),
    ]
    nodes = [*_zero_of_input("images", 3), helper.make_node("Add", ["raw", "images_zero"], ["output"])]
    graph = helper.make_graph(
        nodes,
        "constant_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(raw.shape))],
        initializers,
    )
    return _save(graph, path)


def yolox_raw(
    anchors: dict[int, tuple[float, ...]], input_size: tuple[int, int], classes: int = 1
) -> np.ndarray:
    """A raw YOLOX output: anchor index -> (dx, dy, log_w, log_h, objectness, person score); the rest 0."""
    raw = np.zeros((1, yolox_anchor_count(input_size), 5 + classes), np.float32)
    for anchor, values in anchors.items():
        raw[0, anchor, :6] = values
    return raw


def simcc_peaks(
    x_bins: np.ndarray, y_bins: np.ndarray, input_size: tuple[int, int], peak: float = 1.0, floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """SimCC logits (1, 133, 2w) and (1, 133, 2h) equal to ``floor`` except ``peak`` at the given bins."""
    height, width = input_size
    simcc_x = np.full((1, NUM_KEYPOINTS, 2 * width), floor, np.float32)
    simcc_y = np.full((1, NUM_KEYPOINTS, 2 * height), floor, np.float32)
    keypoints = np.arange(NUM_KEYPOINTS)
    simcc_x[0, keypoints, np.asarray(x_bins)] = peak
    simcc_y[0, keypoints, np.asarray(y_bins)] = peak
    return simcc_x, simcc_y


def peak_pose(
    path: Path,
    simcc_x: np.ndarray,
    simcc_y: np.ndarray,
    input_size: tuple[int, int] = (64, 48),
    dynamic: bool = True,
) -> Path:
    """A pose graph whose outputs are the given (1, 133, bins) logits for every batch item."""
    height, width = input_size
    initializers = [
        numpy_helper.from_array(np.asarray(simcc_x, np.float32), "const_x"),
        numpy_helper.from_array(np.asarray(simcc_y, np.float32), "const_y"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "zero_shape"),
    ]
    nodes = [
        *_zero_of_input("input", 3),
        helper.make_node("Add", ["const_x", "input_zero"], ["simcc_x"]),
        helper.make_node("Add", ["const_y", "input_zero"], ["simcc_y"]),
    ]
    batch = _batch_dim(dynamic)
    graph = helper.make_graph(
        nodes,
        "peak_pose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, width])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 2 * width]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 2 * height]),
        ],
        initializers,
    )
    return _save(graph, path)


def pose_like(
    path: Path, input_size: tuple[int, int] = (64, 48), dynamic: bool = True, seed: int = 0
) -> Path:
    """A small deterministic SimCC network: conv-relu-maxpool-conv-relu-conv(133) -> MatMul heads.

    Input (N, 3, h, w) with h, w multiples of 8; the 133-channel map at 1/8 resolution is
    flattened per keypoint and projected to ``2w`` and ``2h`` bins, like the RTMCC head.
    """
    height, width = input_size
    rng = np.random.default_rng(seed)
    cells = (height // 8) * (width // 8)

    def weight(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    initializers = [
        numpy_helper.from_array(weight(8, 3, 3, 3, scale=0.3), "w1"),
        numpy_helper.from_array(weight(8, scale=0.1), "b1"),
        numpy_helper.from_array(weight(16, 8, 3, 3, scale=0.2), "w2"),
        numpy_helper.from_array(weight(16, scale=0.1), "b2"),
        numpy_helper.from_array(weight(NUM_KEYPOINTS, 16, 1, 1, scale=0.4), "w3"),
        numpy_helper.from_array(weight(NUM_KEYPOINTS, scale=0.1), "b3"),
        numpy_helper.from_array(np.array([0, NUM_KEYPOINTS, cells], np.int64), "flat_shape"),
        numpy_helper.from_array(weight(cells, 2 * width, scale=0.007), "head_x"),
        numpy_helper.from_array(weight(cells, 2 * height, scale=0.007), "head_y"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node(
            "Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["c3", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "head_x"], ["simcc_x"]),
        helper.make_node("MatMul", ["flat", "head_y"], ["simcc_y"]),
    ]
    batch = _batch_dim(dynamic)
    graph = helper.make_graph(
        nodes,
        "pose_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, width])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 2 * width]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 2 * height]),
        ],
        initializers,
    )
    return _save(graph, path)


def declared_pose(
    path: Path,
    input_size: tuple[int, int],
    keypoints: int = NUM_KEYPOINTS,
    bins: tuple[int, int] | None = None,
) -> Path:
    """A pose graph that only declares shapes: input (N, 3, h, w), outputs (N, K, bins_x/bins_y).

    The outputs are zeros made by ConstantOfShape, so any declared size costs nothing to build;
    ``bins`` defaults to the SimCC ``(2w, 2h)``. For tests of what is refused when a model is opened.
    """
    height, width = input_size
    bins_x, bins_y = bins if bins is not None else (2 * width, 2 * height)
    initializers = [
        numpy_helper.from_array(np.array([1, keypoints, bins_x], np.int64), "shape_x"),
        numpy_helper.from_array(np.array([1, keypoints, bins_y], np.int64), "shape_y"),
    ]
    nodes = [
        helper.make_node("ConstantOfShape", ["shape_x"], ["simcc_x"]),
        helper.make_node("ConstantOfShape", ["shape_y"], ["simcc_y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "declared_pose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, ["N", keypoints, bins_x]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, ["N", keypoints, bins_y]),
        ],
        initializers,
    )
    return _save(graph, path)


def declared_detector(path: Path, input_size: tuple[int, int], anchors: int, classes: int = 1) -> Path:
    """A detector graph that only declares shapes: input (1, 3, h, w), output (1, anchors, 5 + C) of
    zeros. For tests of what is refused when a model is opened."""
    height, width = input_size
    initializers = [numpy_helper.from_array(np.array([1, anchors, 5 + classes], np.int64), "shape")]
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["output"])],
        "declared_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, anchors, 5 + classes])],
        initializers,
    )
    return _save(graph, path)
