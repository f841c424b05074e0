"""Reading weight files safely, unwrapping checkpoint containers, and inferring the architecture.

Only ``torch.load(weights_only=True)`` and safetensors are used unless the caller explicitly passes
``allow_unsafe_pickle=True`` (a pickle that needs arbitrary code can run anything on load).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dwpose_ctrl.files import check_regular_file
from dwpose_ctrl.models.rtmpose import RTMPOSE_SIZES, RTMPose, build_rtmpose
from dwpose_ctrl.models.yolox import YOLOX, YOLOX_SIZES, build_yolox
from dwpose_ctrl.weights import check_readable

StateDict = dict[str, torch.Tensor]
DistillerPart = Literal["auto", "student", "teacher", "stage2"]
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class UnsafeCheckpointError(ValueError):
    """The checkpoint is a pickle that needs arbitrary code to load."""


@dataclass(frozen=True)
class RTMPoseConfig:
    size: str
    input_size: tuple[int, int]
    num_keypoints: int


@dataclass(frozen=True)
class YOLOXConfig:
    size: str
    num_classes: int


def read_weight_file(path: str | os.PathLike, allow_unsafe_pickle: bool = False) -> dict:
    """Read a ``.safetensors`` file or a torch pickle (``.pth``/``.pt``/``.ckpt``/``.bin``) on the CPU."""
    path = Path(path)
    check_regular_file(path, "weight file")
    check_readable(path, "weight file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as error:
            raise _corrupt(path, "safetensors file", error) from error
    if path.suffix not in TORCH_SUFFIXES:
        raise ValueError(
            f"{path.name}: unsupported weight file type {path.suffix!r}; "
            f"expected .safetensors or one of {TORCH_SUFFIXES} (use load_onnx_weights for .onnx)"
        )
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_unsafe_pickle:
            raise UnsafeCheckpointError(
                f"{path.name} is a pickle that needs arbitrary Python code to load "
                f"({_unsafe_globals(path)}), which can run anything on your machine, so it was refused. "
                f"If you trust its source, convert it once to safe files with "
                f"`python -m dwpose_ctrl.convert {path} --out DIR --allow-unsafe-pickle` and use the "
                ".safetensors/.onnx it writes (in Python: allow_unsafe_pickle=True)."
            ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:  # a truncated zip or pickle stream
        raise _corrupt(path, "PyTorch checkpoint", error) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as error:
        raise _corrupt(path, "PyTorch checkpoint", error) from error


def _corrupt(path: Path, kind: str, error: BaseException) -> ValueError:
    """The error for a weight file that exists and is readable but does not parse."""
    text = str(error).strip()
    first_sentence = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
    return ValueError(
        f"cannot read {path} as a {kind}: it is truncated or corrupt ({first_sentence}); "
        "copy or download it again"
    )


def numpy_safe_globals() -> list:
    """numpy arrays, scalars and dtypes: plain data that mmengine checkpoints keep in their ``meta``.

    Allow-listed for ``weights_only`` loading under their numpy 2 and numpy 1 (``numpy.core``) names.
    """
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        function = getattr(multiarray, name)
        allowed.append(function)
        allowed.extend(
            (function, f"{package}.multiarray.{name}") for package in ("numpy.core", "numpy._core")
        )
    dtype_classes = vars(getattr(np, "dtypes", object)).values()
    allowed.extend(cls for cls in dtype_classes if isinstance(cls, type) and issubclass(cls, np.dtype))
    return allowed


def _unsafe_globals(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as error:  # the listing is only a hint for the message
        return f"could not list its globals: {error}"
    return "it references " + ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def compose_stage2(state: Mapping[str, torch.Tensor]) -> StateDict:
    """DWPose stage-2 shipping model: the teacher's backbone plus the student's (trained) head."""
    backbone = {k: v for k, v in _strip_prefix(state, "teacher.").items() if k.startswith("backbone.")}
    head = {k: v for k, v in _strip_prefix(state, "student.").items() if k.startswith("head.")}
    if not backbone or not head:
        raise ValueError(
            "stage-2 composition needs 'teacher.backbone.*' and 'student.head.*' keys; "
            f"found {len(backbone)} teacher backbone and {len(head)} student head tensors"
        )
    return {**backbone, **head}


def unwrap_state_dict(checkpoint: Mapping | torch.nn.Module, part: DistillerPart = "auto") -> StateDict:
    """The model's tensors from a checkpoint container.

    Handles ``{"state_dict": ...}`` (mmpose/mmengine), ``{"model": ...}`` (YOLOX), a ``module.``
    prefix (DataParallel) and distiller checkpoints with ``student.``/``teacher.`` prefixes.
    ``part`` picks the distiller network: ``student``, ``teacher`` or ``stage2`` (teacher backbone
    + student head); ``auto`` takes the student, or the stage-2 composition when the student has a
    head but no backbone.
    """
    if isinstance(checkpoint, torch.nn.Module):  # a whole pickled model (only with allow_unsafe_pickle)
        checkpoint = checkpoint.state_dict()
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            f"a checkpoint must be a mapping of names to tensors, got {type(checkpoint).__name__}"
        )
    state: Mapping = checkpoint
    for container in ("state_dict", "model"):
        if container in state and isinstance(state[container], Mapping):
            state = state[container]
            break
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise ValueError(f"the checkpoint holds no tensors (top-level keys: {sorted(checkpoint)[:10]})")
    if all(key.startswith("module.") for key in tensors):
        tensors = _strip_prefix(tensors, "module.")
    has_student = any(key.startswith("student.") for key in tensors)
    has_teacher = any(key.startswith("teacher.") for key in tensors)
    if part not in ("auto", "student", "teacher", "stage2"):
        raise ValueError(f"part must be 'auto', 'student', 'teacher' or 'stage2', got {part!r}")
    if not (has_student or has_teacher):
        if part != "auto":
            raise ValueError(f"part={part!r} was requested but the checkpoint is not a distiller checkpoint")
        return tensors
    if part == "auto":
        student = _strip_prefix(tensors, "student.")
        student_has_backbone = any(key.startswith("backbone.") for key in student)
        part = "student" if student_has_backbone or not has_teacher else "stage2"
    if part == "stage2":
        return compose_stage2(tensors)
    selected = _strip_prefix(tensors, f"{part}.")
    if not selected:
        raise ValueError(f"the distiller checkpoint has no '{part}.' tensors")
    return selected


def load_state_dict(
    path: str | os.PathLike, part: DistillerPart = "auto", allow_unsafe_pickle: bool = False
) -> StateDict:
    """Read a weight file and return the model's state dict (see :func:`unwrap_state_dict`)."""
    return unwrap_state_dict(read_weight_file(path, allow_unsafe_pickle), part)


def detect_family(state: Mapping[str, torch.Tensor]) -> Literal["rtmpose", "yolox"]:
    if "head.cls_x.weight" in state:
        return "rtmpose"
    if "head.cls_preds.0.weight" in state:
        return "yolox"
    raise ValueError(
        "cannot tell the architecture: the state dict has neither 'head.cls_x.weight' (RTMPose) nor "
        "'head.cls_preds.0.weight' (YOLOX)"
    )


def _size_by_width(widths: dict[str, int], channels: int, family: str) -> str:
    for size, width in widths.items():
        if width == channels:
            return size
    raise ValueError(f"no {family} size has {channels} stem channels; known: {widths}")


def rtmpose_stem_channels() -> dict[str, int]:
    """Output channels of ``backbone.stem.2`` (64 x widen) per RTMPose size."""
    return {size: int(64 * setting.widen_factor) for size, setting in RTMPOSE_SIZES.items()}


def yolox_stem_channels() -> dict[str, int]:
    """Output channels of the Focus stem (64 x width) per YOLOX size."""
    return {size: int(64 * setting.width) for size, setting in YOLOX_SIZES.items()}


def infer_rtmpose_config(state: Mapping[str, torch.Tensor]) -> RTMPoseConfig:
    """Size, input (h, w) and keypoint count from tensor shapes.

    ``head.cls_x.weight`` is (2w, 256) and ``head.mlp.1.weight`` is (256, (h/32) * (w/32)).
    """
    stem = state["backbone.stem.2.conv.weight"].shape[0]
    size = _size_by_width(rtmpose_stem_channels(), stem, "RTMPose")
    width = state["head.cls_x.weight"].shape[0] // 2
    height = state["head.cls_y.weight"].shape[0] // 2
    flatten = state["head.mlp.1.weight"].shape[1]
    if flatten != (height // 32) * (width // 32):
        raise ValueError(
            f"inconsistent RTMPose head: cls_x/cls_y give {height}x{width} but mlp.1 expects {flatten} cells"
        )
    return RTMPoseConfig(size, (height, width), state["head.final_layer.weight"].shape[0])


def infer_yolox_config(state: Mapping[str, torch.Tensor]) -> YOLOXConfig:
    """Variant (from the stem width) and class count of a YOLOX state dict."""
    stem = state["backbone.backbone.stem.conv.conv.weight"].shape[0]
    size = _size_by_width(yolox_stem_channels(), stem, "YOLOX")
    return YOLOXConfig(size, state["head.cls_preds.0.weight"].shape[0])


def build_from_state_dict(state: Mapping[str, torch.Tensor]) -> RTMPose | YOLOX:
    """Build the network the state dict describes and load it strictly (eval mode).

    A state dict that lacks a tensor, has an extra one or one of the wrong shape is refused with
    a ``ValueError`` naming them.
    """
    family = detect_family(state)
    try:
        if family == "rtmpose":
            config = infer_rtmpose_config(state)
            model: RTMPose | YOLOX = build_rtmpose(config.size, config.input_size, config.num_keypoints)
        else:
            yolox_config = infer_yolox_config(state)
            model = build_yolox(yolox_config.size, yolox_config.num_classes)
    except KeyError as error:
        raise ValueError(
            f"the {family} checkpoint lacks the tensor {error.args[0]!r} that tells its architecture; "
            "it is incomplete or not an mmpose/YOLOX checkpoint"
        ) from error
    check_state_fits(model, state)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def check_state_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse a state dict that does not have exactly the model's tensors and shapes, naming them."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        name = type(model).__name__
        raise ValueError(
            f"the checkpoint does not fit the {name} its shapes describe ({'; '.join(problems)}); "
            "it is incomplete, from another architecture or edited"
        )


def load_model(
    path: str | os.PathLike, part: DistillerPart = "auto", allow_unsafe_pickle: bool = False
) -> RTMPose | YOLOX:
    """Build and load a network from a checkpoint, a safetensors file or an ONNX file."""
    if Path(path).suffix == ".onnx":
        from dwpose_ctrl.models.onnx_import import build_from_onnx

        return build_from_onnx(path)
    return build_from_state_dict(load_state_dict(path, part, allow_unsafe_pickle))
