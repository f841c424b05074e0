"""Torch runtime behind the :class:`dwpose_ctrl.runtime.Backend` interface.

``load_torch_backend`` builds the network a weight file describes (``.onnx`` with its weights
imported, ``.pth``/``.pt`` loaded safely, ``.safetensors``) and returns a backend whose ``run``
gives the same outputs, in the same order and layout, as the ONNX model: pose ->
``[simcc_x, simcc_y]``, detector -> ``[N x A x (5 + C)]``, always float32 numpy arrays.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dwpose_ctrl.models.checkpoints import DistillerPart, load_model
from dwpose_ctrl.models.export import default_input_size
from dwpose_ctrl.models.rtmpose import RTMPose
from dwpose_ctrl.models.yolox import YOLOX
from dwpose_ctrl.runtime import parse_device
from dwpose_ctrl.weights import check_pose_geometry

Role = Literal["detector", "pose"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Accepts None (float32), "float32", "float16"/"fp16", "bfloat16"/"bf16" or a torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ValueError(
        f"unsupported dtype {dtype!r}; use None, 'float32', 'float16'/'fp16' or 'bfloat16'/'bf16'"
    )


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``conv`` + ``bn`` pair (eval statistics) into the conv, in place; returns the model.

    For inference only: the fused model keeps the other names but no longer has BatchNorm tensors.
    """
    for module in model.modules():
        conv, batch_norm = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(batch_norm, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(conv.eval(), batch_norm.eval())
            module.bn = nn.Identity()
    return model


class TorchBackend:
    """A PyTorch RTMPose or YOLOX network as a pipeline :class:`~dwpose_ctrl.runtime.Backend`.

    Inputs are float32 NCHW numpy batches; they are cast to the backend's dtype on its device and
    the outputs come back as float32 numpy arrays. Any batch size is accepted.
    """

    def __init__(
        self,
        model: RTMPose | YOLOX,
        input_size: tuple[int, int] | None = None,
        device: str = "cpu",
        dtype: str | torch.dtype | None = None,
    ):
        if not isinstance(model, (RTMPose, YOLOX)):
            raise TypeError(f"TorchBackend expects an RTMPose or YOLOX model, got {type(model).__name__}")
        self.model = model.eval()
        self._input_size = tuple(input_size) if input_size is not None else default_input_size(model)
        if isinstance(model, RTMPose) and self._input_size != model.input_size:
            raise ValueError(
                f"the RTMPose was built for {model.input_size}, not input_size={self._input_size}"
            )
        self._device = "cpu"
        self._dtype = torch.float32
        self.to(device, dtype)

    @property
    def input_size(self) -> tuple[int, int]:
        return self._input_size

    @property
    def dynamic_batch(self) -> bool:
        return True

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def to(self, device: str, dtype: str | torch.dtype | None = None) -> TorchBackend:
        """Move to ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (and maybe the dtype); returns self.

        Half precision is for GPUs: moving a float16 backend to the CPU switches it to float32.
        A GPU requested that this torch cannot use falls back to the CPU with a warning
        (``DWposeDetector`` checks first and refuses instead, unless told to fall back).
        """
        kind, index = parse_device(device)
        target_dtype = parse_dtype(dtype) if dtype is not None else self._dtype
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
        if not available[kind]:
            warnings.warn(
                f"device={device!r} was requested but this torch has no {kind.upper()} device; "
                "running on the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
            kind = "cpu"
        if kind == "cpu" and target_dtype == torch.float16:
            if dtype is not None:
                raise ValueError("float16 needs a CUDA device (or mps); use float32 or bfloat16 on the CPU")
            target_dtype = torch.float32
        self._device = {"cpu": "cpu", "mps": "mps"}.get(kind, f"cuda:{index}")
        self._dtype = target_dtype
        memory_format = torch.channels_last if kind == "cuda" else torch.contiguous_format
        self.model.to(device=self._device, dtype=self._dtype, memory_format=memory_format)
        if isinstance(self.model, RTMPose):
            self.model.keep_head_float32()
        return self

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"run expects a numpy array, got {type(batch).__name__}")
        height, width = self._input_size
        if batch.ndim != 4 or batch.shape[1] != 3 or tuple(batch.shape[2:]) != (height, width):
            raise ValueError(f"expected a (N, 3, {height}, {width}) batch, got {batch.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        tensor = tensor.to(self._device, non_blocking=True).to(self._dtype)
        if self._device.startswith("cuda"):
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            outputs = self.model(tensor)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [output.float().cpu().numpy() for output in outputs]


def load_torch_backend(
    model_path: str | os.PathLike,
    role: Role,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    input_size: tuple[int, int] | None = None,
    part: DistillerPart = "auto",
    allow_unsafe_pickle: bool = False,
) -> TorchBackend:
    """A :class:`TorchBackend` for a weight file; ``role`` is ``"detector"`` (YOLOX) or ``"pose"`` (RTMPose).

    ``input_size`` is only needed for a YOLOX given as a state dict, whose resolution the weights
    do not fix (default: 416 for nano/tiny, 640 otherwise); ONNX files declare theirs.
    """
    if role not in ("detector", "pose"):
        raise ValueError(f"role must be 'detector' or 'pose', got {role!r}")
    path = Path(model_path)
    model = load_model(path, part=part, allow_unsafe_pickle=allow_unsafe_pickle)
    expected = YOLOX if role == "detector" else RTMPose
    if not isinstance(model, expected):
        raise ValueError(
            f"{path.name} holds a {type(model).__name__} but role={role!r} needs a {expected.__name__}"
        )
    if isinstance(model, RTMPose):
        check_pose_geometry(
            path.name,
            model.input_size,
            (model.num_keypoints, model.num_keypoints),
            (model.head.cls_x.out_features, model.head.cls_y.out_features),
        )
    if path.suffix == ".onnx" and input_size is None:
        from dwpose_ctrl.models.onnx_import import read_onnx_input_size

        input_size = read_onnx_input_size(path)
    return TorchBackend(fuse_batchnorm(model), input_size, device, dtype)
