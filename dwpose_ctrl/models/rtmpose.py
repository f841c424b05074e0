"""RTMPose (CSPNeXt + RTMCC head) for the sizes t/s/m/l/x, as data plus one builder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dwpose_ctrl.arguments import check_positive_int, is_integer
from dwpose_ctrl.models.cspnext import CSPNeXt
from dwpose_ctrl.models.rtmcc_head import RTMCCHead


@dataclass(frozen=True)
class RTMPoseSize:
    """Scaling of the CSPNeXt P5 layout for one RTMPose size."""

    deepen_factor: float
    widen_factor: float


RTMPOSE_SIZES: dict[str, RTMPoseSize] = {
    "t": RTMPoseSize(0.167, 0.375),
    "s": RTMPoseSize(0.33, 0.5),
    "m": RTMPoseSize(0.67, 0.75),
    "l": RTMPoseSize(1.0, 1.0),
    "x": RTMPoseSize(1.33, 1.25),
}
RTMPOSE_INPUT_SIZES: tuple[tuple[int, int], ...] = ((256, 192), (384, 288))


class RTMPose(nn.Module):
    """Top-down whole-body pose network.

    ``forward(x)`` returns ``(simcc_x, simcc_y)`` of shapes (N, K, 2w) and (N, K, 2h).
    ``backbone(x)`` alone gives the stride-32 feature map and ``head(features)`` the logits, which
    is what feature distillation needs.
    """

    def __init__(self, size: str, input_size: tuple[int, int], num_keypoints: int):
        super().__init__()
        setting = RTMPOSE_SIZES[size]
        self.size = size
        self.input_size = input_size
        self.num_keypoints = num_keypoints
        self.backbone = CSPNeXt(setting.deepen_factor, setting.widen_factor)
        self.head = RTMCCHead(self.backbone.out_channels, input_size, num_keypoints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        head_dtype = self.head.final_layer.weight.dtype
        if features.dtype != head_dtype:  # half-precision backbone, float32 head (see keep_head_float32)
            features = features.to(head_dtype)
        return self.head(features)

    def keep_head_float32(self) -> RTMPose:
        """Run the head in float32 while the backbone runs in float16/bfloat16; returns self.

        The head's norms and squared attention scores can exceed the float16 range; the head is a
        small part of the compute, so it stays in float32 and the logits come out in float32.
        """
        self.head.float()
        return self


def _check_input_size(input_size: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(input_size, (tuple, list))
        or len(input_size) != 2
        or not all(is_integer(side) and side > 0 for side in input_size)
    ):
        raise TypeError(f"input_size must be a (height, width) pair of positive ints, got {input_size!r}")
    height, width = int(input_size[0]), int(input_size[1])
    if height % 32 or width % 32:
        raise ValueError(
            f"input_size {input_size} must be multiples of 32 (the head reads the stride-32 map); "
            "RTMPose uses (256, 192) or (384, 288)"
        )
    return int(height), int(width)


def build_rtmpose(size: str, input_size: tuple[int, int] = (256, 192), num_keypoints: int = 133) -> RTMPose:
    """Build an RTMPose network with mmpose parameter names (random weights, training mode).

    ``size`` is one of ``t``, ``s``, ``m``, ``l``, ``x``; ``input_size`` is (height, width).
    """
    if size not in RTMPOSE_SIZES:
        raise ValueError(f"unknown RTMPose size {size!r}; choose one of {sorted(RTMPOSE_SIZES)}")
    num_keypoints = check_positive_int("num_keypoints", num_keypoints)
    return RTMPose(size, _check_input_size(input_size), num_keypoints)
