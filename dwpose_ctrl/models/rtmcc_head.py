"""RTMCC head (SimCC classification with a gated attention unit), mmpose parameter names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIMCC_SPLIT_RATIO = 2.0
FINAL_CONV_INIT_STD = 0.001
LINEAR_INIT_STD = 0.01
HIDDEN_DIMS = 256
ATTENTION_DIMS = 128
EXPANSION_FACTOR = 2


class ScaleNorm(nn.Module):
    """``x / clamp(||x||_2 * d^-0.5, eps) * g`` over the last dimension, one learned scalar ``g``."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class Scale(nn.Module):
    """Per-channel learned scale."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class GatedAttentionUnit(nn.Module):
    """mmpose's RTMCCBlock as used by RTMPose: self-attention, SiLU, no relative bias, shortcut."""

    def __init__(self, dims: int = HIDDEN_DIMS, attention_dims: int = ATTENTION_DIMS):
        super().__init__()
        self.expanded = dims * EXPANSION_FACTOR
        self.attention_dims = attention_dims
        self.uv = nn.Linear(dims, 2 * self.expanded + attention_dims, bias=False)
        self.o = nn.Linear(self.expanded, dims, bias=False)
        self.gamma = nn.Parameter(torch.rand(2, attention_dims))
        self.beta = nn.Parameter(torch.rand(2, attention_dims))
        self.ln = ScaleNorm(dims)
        self.res_scale = Scale(dims)
        self.act = nn.SiLU()
        self.sqrt_s = math.sqrt(attention_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uv = self.act(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.expanded, self.expanded, self.attention_dims], dim=2)
        base = base.unsqueeze(2) * self.gamma[None, None, :] + self.beta
        q, k = torch.unbind(base, dim=2)
        kernel = torch.square(F.relu(torch.bmm(q, k.transpose(1, 2)) / self.sqrt_s))
        return self.res_scale(x) + self.o(u * torch.bmm(kernel, v))


class RTMCCHead(nn.Module):
    """7x7 conv to K maps -> flatten -> ScaleNorm + Linear -> GAU -> ``cls_x`` and ``cls_y`` logits.

    Built with mmpose's initialisation (:meth:`reset_parameters`), so the first SimCC logits are
    nearly uniform, as in an mmpose-built model.
    """

    def __init__(self, in_channels: int, input_size: tuple[int, int], num_keypoints: int):
        super().__init__()
        height, width = input_size
        flatten_dims = (height // 32) * (width // 32)
        self.in_channels = in_channels
        self.input_size = (height, width)
        self.num_keypoints = num_keypoints
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size=7, stride=1, padding=3)
        self.mlp = nn.Sequential(ScaleNorm(flatten_dims), nn.Linear(flatten_dims, HIDDEN_DIMS, bias=False))
        self.gau = GatedAttentionUnit()
        self.cls_x = nn.Linear(HIDDEN_DIMS, int(width * SIMCC_SPLIT_RATIO), bias=False)
        self.cls_y = nn.Linear(HIDDEN_DIMS, int(height * SIMCC_SPLIT_RATIO), bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmpose's ``RTMCCHead.default_init_cfg``, which mmengine applies to every submodule:
        each Conv2d Normal(0, 0.001), each Linear (``mlp.1``, GAU ``uv`` and ``o``, ``cls_x``,
        ``cls_y``) Normal(0, 0.01), biases 0. As in mmpose, the ScaleNorm gains and the residual
        scale stay 1 and the GAU's ``gamma`` and ``beta`` U(0, 1)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                std = FINAL_CONV_INIT_STD if isinstance(module, nn.Conv2d) else LINEAR_INIT_STD
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.flatten(self.final_layer(features), 2)
        x = self.gau(self.mlp(x))
        return self.cls_x(x), self.cls_y(x)
