"""PyTorch networks of DWPose: RTMPose (CSPNeXt + RTMCC head) and YOLOX, weights in and out.

Parameter names follow mmpose (RTMPose) and the official YOLOX, so their checkpoints load with
``strict=True``; ONNX exports can be imported back (:func:`load_onnx_weights`).
"""

from dwpose_ctrl.models.backend import TorchBackend, fuse_batchnorm, load_torch_backend
from dwpose_ctrl.models.checkpoints import (
    RTMPoseConfig,
    UnsafeCheckpointError,
    YOLOXConfig,
    build_from_state_dict,
    compose_stage2,
    infer_rtmpose_config,
    infer_yolox_config,
    load_model,
    load_state_dict,
    read_weight_file,
    unwrap_state_dict,
)
from dwpose_ctrl.models.export import export_onnx, export_safetensors
from dwpose_ctrl.models.onnx_import import build_from_onnx, load_onnx_weights, read_onnx_input_size
from dwpose_ctrl.models.rtmpose import RTMPOSE_SIZES, RTMPose, build_rtmpose
from dwpose_ctrl.models.yolox import YOLOX, YOLOX_SIZES, build_yolox

__all__ = [
    "RTMPOSE_SIZES",
    "YOLOX",
    "YOLOX_SIZES",
    "RTMPose",
    "RTMPoseConfig",
    "TorchBackend",
    "UnsafeCheckpointError",
    "YOLOXConfig",
    "build_from_onnx",
    "build_from_state_dict",
    "build_rtmpose",
    "build_yolox",
    "compose_stage2",
    "export_onnx",
    "export_safetensors",
    "fuse_batchnorm",
    "infer_rtmpose_config",
    "infer_yolox_config",
    "load_model",
    "load_onnx_weights",
    "load_state_dict",
    "load_torch_backend",
    "read_onnx_input_size",
    "read_weight_file",
    "unwrap_state_dict",
]
