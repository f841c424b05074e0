"""YOLOX detectors (nano ... x), pure PyTorch, with the official Megvii YOLOX parameter names.

``forward`` returns what the official ONNX export returns: (N, A, 5 + C) with raw box regression,
sigmoid objectness and sigmoid class scores, strides 8/16/32 concatenated (row-major grids).
Decoding and NMS belong to :mod:`dwpose_ctrl.person_detection`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dwpose_ctrl.arguments import check_positive_int

BN_EPS = 1e-3
BN_MOMENTUM = 0.03
STRIDES: tuple[int, ...] = (8, 16, 32)
FPN_CHANNELS: tuple[int, ...] = (256, 512, 1024)


@dataclass(frozen=True)
class YOLOXSize:
    """Depth and width multipliers of one YOLOX variant and its usual input side."""

    depth: float
    width: float
    depthwise: bool
    default_input_side: int


YOLOX_SIZES: dict[str, YOLOXSize] = {
    "nano": YOLOXSize(0.33, 0.25, True, 416),
    "tiny": YOLOXSize(0.33, 0.375, False, 416),
    "s": YOLOXSize(0.33, 0.50, False, 640),
    "m": YOLOXSize(0.67, 0.75, False, 640),
    "l": YOLOXSize(1.0, 1.0, False, 640),
    "x": YOLOXSize(1.33, 1.25, False, 640),
}


class BaseConv(nn.Module):
    """Conv (no bias) + BatchNorm + SiLU, padding (k-1)//2."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise k x k BaseConv then pointwise 1x1 BaseConv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, kernel_size, stride, groups=in_channels)
        self.pconv = BaseConv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def _conv(
    depthwise: bool, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
) -> nn.Module:
    if depthwise:
        return DWConv(in_channels, out_channels, kernel_size, stride)
    return BaseConv(in_channels, out_channels, kernel_size, stride)


class Bottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool, depthwise: bool):
        super().__init__()
        self.conv1 = BaseConv(channels, channels, 1)
        self.conv2 = _conv(depthwise, channels, channels, 3)
        self.use_add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """YOLOX's C3: two 1x1 branches, bottlenecks on the first, concat, 1x1."""

    def __init__(self, in_channels: int, out_channels: int, n: int, shortcut: bool, depthwise: bool):
        super().__init__()
        hidden = int(out_channels * 0.5)
        self.conv1 = BaseConv(in_channels, hidden, 1)
        self.conv2 = BaseConv(in_channels, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut, depthwise) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_1 = self.conv1(x)
        x_2 = self.conv2(x)
        return self.conv3(torch.cat((self.m(x_1), x_2), dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.m)], dim=1))


class Focus(nn.Module):
    """Space-to-depth (top-left, bottom-left, top-right, bottom-right) then a 3x3 BaseConv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = BaseConv(in_channels * 4, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top_left = x[..., ::2, ::2]
        top_right = x[..., ::2, 1::2]
        bottom_left = x[..., 1::2, ::2]
        bottom_right = x[..., 1::2, 1::2]
        return self.conv(torch.cat((top_left, bottom_left, top_right, bottom_right), dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool):
        super().__init__()
        base_channels = int(width * 64)
        base_depth = max(round(depth * 3), 1)
        self.stem = Focus(3, base_channels)
        self.dark2 = nn.Sequential(
            _conv(depthwise, base_channels, base_channels * 2, 3, 2),
            CSPLayer(base_channels * 2, base_channels * 2, base_depth, True, depthwise),
        )
        self.dark3 = nn.Sequential(
            _conv(depthwise, base_channels * 2, base_channels * 4, 3, 2),
            CSPLayer(base_channels * 4, base_channels * 4, base_depth * 3, True, depthwise),
        )
        self.dark4 = nn.Sequential(
            _conv(depthwise, base_channels * 4, base_channels * 8, 3, 2),
            CSPLayer(base_channels * 8, base_channels * 8, base_depth * 3, True, depthwise),
        )
        self.dark5 = nn.Sequential(
            _conv(depthwise, base_channels * 8, base_channels * 16, 3, 2),
            SPPBottleneck(base_channels * 16, base_channels * 16),
            CSPLayer(base_channels * 16, base_channels * 16, base_depth, False, depthwise),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        dark3 = self.dark3(x)
        dark4 = self.dark4(dark3)
        return dark3, dark4, self.dark5(dark4)


class YOLOPAFPN(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool):
        super().__init__()
        c3, c4, c5 = (int(channels * width) for channels in FPN_CHANNELS)
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False, depthwise)
        self.reduce_conv1 = BaseConv(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False, depthwise)
        self.bu_conv2 = _conv(depthwise, c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False, depthwise)
        self.bu_conv1 = _conv(depthwise, c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False, depthwise)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dark3, dark4, dark5 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(dark5)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), dark4], dim=1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), dark3], dim=1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], dim=1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], dim=1))
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    def __init__(self, num_classes: int, width: float, depthwise: bool):
        super().__init__()
        hidden = int(256 * width)
        self.num_classes = num_classes
        self.stems = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        for channels in FPN_CHANNELS:
            self.stems.append(BaseConv(int(channels * width), hidden, 1))
            self.cls_convs.append(
                nn.Sequential(_conv(depthwise, hidden, hidden, 3), _conv(depthwise, hidden, hidden, 3))
            )
            self.reg_convs.append(
                nn.Sequential(_conv(depthwise, hidden, hidden, 3), _conv(depthwise, hidden, hidden, 3))
            )
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1))

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        outputs = []
        for level, x in enumerate(features):
            x = self.stems[level](x)
            cls_output = self.cls_preds[level](self.cls_convs[level](x))
            reg_feat = self.reg_convs[level](x)
            reg_output = self.reg_preds[level](reg_feat)
            obj_output = self.obj_preds[level](reg_feat)
            output = torch.cat([reg_output, obj_output.sigmoid(), cls_output.sigmoid()], dim=1)
            outputs.append(output.flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)


class YOLOX(nn.Module):
    """Detector whose ``forward`` gives the official ONNX output layout (N, A, 5 + C)."""

    def __init__(self, size: str, num_classes: int):
        super().__init__()
        setting = YOLOX_SIZES[size]
        self.size = size
        self.num_classes = num_classes
        self.backbone = YOLOPAFPN(setting.depth, setting.width, setting.depthwise)
        self.head = YOLOXHead(num_classes, setting.width, setting.depthwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_yolox(size: str, num_classes: int = 80) -> YOLOX:
    """Build a YOLOX detector (``nano``, ``tiny``, ``s``, ``m``, ``l``, ``x``) with official names."""
    if size not in YOLOX_SIZES:
        raise ValueError(f"unknown YOLOX size {size!r}; choose one of {list(YOLOX_SIZES)}")
    return YOLOX(size, check_positive_int("num_classes", num_classes))
