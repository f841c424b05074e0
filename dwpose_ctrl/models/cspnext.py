"""CSPNeXt backbone (RTMPose), pure PyTorch, with mmdet/mmpose parameter names.

The size table is data: :data:`CSPNEXT_P5_STAGES` is the base (widen = deepen = 1) layout and each
RTMPose size only scales it (SPEC section 8). Module attribute names mirror mmdet's so that
official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StageSetting:
    """One backbone stage at widen = deepen = 1."""

    in_channels: int
    out_channels: int
    num_blocks: int
    add_identity: bool
    use_spp: bool


CSPNEXT_P5_STAGES: tuple[StageSetting, ...] = (
    StageSetting(64, 128, 3, True, False),
    StageSetting(128, 256, 6, True, False),
    StageSetting(256, 512, 6, True, False),
    StageSetting(512, 1024, 3, False, True),
)
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def scaled_blocks(num_blocks: int, deepen_factor: float) -> int:
    """Blocks in a stage after deepening: ``max(round(n * d), 1)``."""
    return max(round(num_blocks * deepen_factor), 1)


class ConvModule(nn.Module):
    """Conv (no bias) + BatchNorm + SiLU, named ``conv`` / ``bn`` like mmcv's ConvModule."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.activate = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise k x k ConvModule followed by a pointwise 1x1 ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class CSPNeXtBlock(nn.Module):
    """3x3 ConvModule, then depthwise-separable 5x5, plus identity when enabled."""

    def __init__(self, channels: int, add_identity: bool):
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3)
        self.conv2 = DepthwiseSeparableConvModule(channels, channels, 5)
        self.add_identity = add_identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """Global average pool, 1x1 conv with bias, hard-sigmoid, channel-wise multiply."""

    def __init__(self, channels: int):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPLayer(nn.Module):
    """Cross-stage partial layer with CSPNeXt blocks and channel attention (expand ratio 0.5)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, add_identity: bool):
        super().__init__()
        mid = int(out_channels * 0.5)
        self.main_conv = ConvModule(in_channels, mid, 1)
        self.short_conv = ConvModule(in_channels, mid, 1)
        self.final_conv = ConvModule(2 * mid, out_channels, 1)
        self.blocks = nn.Sequential(*(CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)))
        self.attention = ChannelAttention(2 * mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.short_conv(x)
        main = self.blocks(self.main_conv(x))
        return self.final_conv(self.attention(torch.cat((main, short), dim=1)))


class SPPBottleneck(nn.Module):
    """1x1 to C/2, max-pools 5/9/13 (stride 1) concatenated with their input, 1x1 to C."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        mid = in_channels // 2
        self.conv1 = ConvModule(in_channels, mid, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvModule(mid * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.poolings)], dim=1))


class CSPNeXt(nn.Module):
    """CSPNeXt P5 backbone; ``forward`` returns the stride-32 feature map (the only one RTMPose uses)."""

    def __init__(self, deepen_factor: float, widen_factor: float):
        super().__init__()
        self.deepen_factor = deepen_factor
        self.widen_factor = widen_factor
        stem_channels = int(CSPNEXT_P5_STAGES[0].in_channels * widen_factor)
        self.stem = nn.Sequential(
            ConvModule(3, stem_channels // 2, 3, stride=2),
            ConvModule(stem_channels // 2, stem_channels // 2, 3),
            ConvModule(stem_channels // 2, stem_channels, 3),
        )
        for index, setting in enumerate(CSPNEXT_P5_STAGES, start=1):
            in_channels = int(setting.in_channels * widen_factor)
            out_channels = int(setting.out_channels * widen_factor)
            layers: list[nn.Module] = [ConvModule(in_channels, out_channels, 3, stride=2)]
            if setting.use_spp:
                layers.append(SPPBottleneck(out_channels, out_channels))
            layers.append(
                CSPLayer(
                    out_channels,
                    out_channels,
                    scaled_blocks(setting.num_blocks, deepen_factor),
                    setting.add_identity,
                )
            )
            self.add_module(f"stage{index}", nn.Sequential(*layers))
        self.out_channels = int(CSPNEXT_P5_STAGES[-1].out_channels * widen_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for index in range(1, len(CSPNEXT_P5_STAGES) + 1):
            x = getattr(self, f"stage{index}")(x)
        return x
