"""Weights out: ONNX (the layout the runtime expects) and safetensors (with architecture metadata)."""

from __future__ import annotations

import copy
import io
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch
from torch import nn

from dwpose_ctrl.files import atomic_path
from dwpose_ctrl.models.rtmpose import RTMPose
from dwpose_ctrl.models.yolox import YOLOX, YOLOX_SIZES

DEFAULT_OPSET = 17
MIN_OPSET = 11


def max_opset() -> int:
    """The newest ONNX opset this torch's (TorchScript) exporter writes."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", DEFAULT_OPSET))


def check_opset(opset: int) -> int:
    """Refuse an opset the runtime cannot read or this torch cannot write; returns it."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset():
        raise ValueError(
            f"unsupported ONNX opset {opset!r}: choose one from {MIN_OPSET} (the oldest the runtime "
            f"reads) to {max_opset()} (the newest torch {torch.__version__} writes); default {DEFAULT_OPSET}"
        )
    return opset


RTMPOSE_INPUT_NAME = "input"
RTMPOSE_OUTPUT_NAMES = ("simcc_x", "simcc_y")
YOLOX_INPUT_NAME = "images"
YOLOX_OUTPUT_NAMES = ("output",)


def io_names(model: nn.Module) -> tuple[str, tuple[str, ...]]:
    """The ONNX input name and output names used for ``model`` (RTMPose or YOLOX)."""
    if isinstance(model, RTMPose):
        return RTMPOSE_INPUT_NAME, RTMPOSE_OUTPUT_NAMES
    if isinstance(model, YOLOX):
        return YOLOX_INPUT_NAME, YOLOX_OUTPUT_NAMES
    raise TypeError(f"expected an RTMPose or YOLOX model, got {type(model).__name__}")


def default_input_size(model: nn.Module) -> tuple[int, int]:
    """RTMPose: its own input size; YOLOX: the variant's usual square side (416 or 640)."""
    if isinstance(model, RTMPose):
        return model.input_size
    if isinstance(model, YOLOX):
        side = YOLOX_SIZES[model.size].default_input_side
        return side, side
    raise TypeError(f"expected an RTMPose or YOLOX model, got {type(model).__name__}")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export an RTMPose (``input`` -> ``simcc_x``, ``simcc_y``) or YOLOX (``images`` -> ``output``).

    The graph is traced in eval mode on a float32 CPU copy of the model with constant folding, so
    BatchNorm is fused into the convolutions as in the official exports. The batch dimension is
    dynamic (named ``batch``) unless ``dynamic_batch=False``; the spatial size is fixed at
    ``input_size`` (default: :func:`default_input_size`). ``opset``: see :func:`check_opset`. The file
    appears whole or not at all (written under a temporary name, then renamed).
    """
    check_opset(opset)
    input_name, output_names = io_names(model)
    height, width = input_size or default_input_size(model)
    if isinstance(model, RTMPose) and (height, width) != model.input_size:
        raise ValueError(f"an RTMPose built for {model.input_size} cannot be exported at {(height, width)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced = copy.deepcopy(model).float().cpu().eval()
    dynamic_axes = {name: {0: "batch"} for name in (input_name, *output_names)} if dynamic_batch else None
    with atomic_path(path) as temporary:  # a failed or killed export leaves no half-written model
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                traced,
                (torch.zeros(1, 3, height, width),),
                temporary,
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        with torch.no_grad():
            outputs = traced(torch.zeros(1, 3, height, width))
        shapes = [tuple(output.shape) for output in (outputs if isinstance(outputs, tuple) else (outputs,))]
        _declare_static_output_dims(Path(temporary), shapes, dynamic_batch)
    return path


def _declare_static_output_dims(path: Path, shapes: list[tuple[int, ...]], dynamic_batch: bool) -> None:
    """Write the fixed output sizes into the graph's declared output shapes.

    With a dynamic batch the tracer leaves every output dimension after a Reshape/Transpose
    symbolic (YOLOX's anchors and 5 + classes), and the runtime's model check needs them.
    """
    import onnx

    graph_model = onnx.load(str(path))
    for output, shape in zip(graph_model.graph.output, shapes, strict=True):
        dims = output.type.tensor_type.shape.dim
        for axis, size in enumerate(shape):
            if axis == 0 and dynamic_batch:
                continue
            dims[axis].dim_value = size
    onnx.save(graph_model, str(path))


def architecture_metadata(model: nn.Module) -> dict[str, str]:
    """String metadata describing the network, stored in safetensors headers."""
    if isinstance(model, RTMPose):
        height, width = model.input_size
        return {
            "family": "rtmpose",
            "size": model.size,
            "input_size": f"{height}x{width}",
            "num_keypoints": str(model.num_keypoints),
        }
    if isinstance(model, YOLOX):
        return {"family": "yolox", "size": model.size, "num_classes": str(model.num_classes)}
    raise TypeError(f"expected an RTMPose or YOLOX model, got {type(model).__name__}")


def export_safetensors(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save the state dict (mmpose / YOLOX names, float32 on the CPU) with architecture metadata."""
    from safetensors.torch import save_file

    metadata = architecture_metadata(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    with atomic_path(path) as temporary:
        save_file(state, temporary, metadata=metadata)
    return path
