"""Training losses.

:class:`SimccKLLoss` is the RTMPose ground-truth loss (mmpose ``KLDiscretLoss`` with beta 10,
label softmax with beta 10 and keypoint weights; SPEC section 9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def simcc_kl_divergence(
    logits: torch.Tensor, labels: torch.Tensor, beta: float, label_beta: float | None
) -> torch.Tensor:
    """Per-keypoint ``KL(label || softmax(beta * logits))`` averaged over the bins.

    ``logits`` and ``labels`` are (N, K, bins); returns (N, K). With ``label_beta`` the labels
    are first turned into a distribution by ``softmax(label_beta * labels)``; otherwise they are
    used as given (they must then already be a distribution).
    """
    log_probabilities = F.log_softmax(logits.float() * beta, dim=-1)
    target = F.softmax(labels.float() * label_beta, dim=-1) if label_beta is not None else labels.float()
    return F.kl_div(log_probabilities, target, reduction="none").mean(dim=-1)


class SimccKLLoss(nn.Module):
    """SimCC KL loss: per axis, bin-averaged KL per keypoint times its weight, summed over N*K;
    the x and y terms are added and divided by K."""

    def __init__(self, beta: float = 10.0, label_beta: float = 10.0, use_target_weight: bool = True):
        super().__init__()
        self.beta = beta
        self.label_beta = label_beta
        self.use_target_weight = use_target_weight

    def forward(
        self,
        simcc_x: torch.Tensor,
        simcc_y: torch.Tensor,
        target_x: torch.Tensor,
        target_y: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        if simcc_x.shape != target_x.shape or simcc_y.shape != target_y.shape:
            raise ValueError(
                f"prediction and target shapes differ: x {tuple(simcc_x.shape)} vs {tuple(target_x.shape)}, "
                f"y {tuple(simcc_y.shape)} vs {tuple(target_y.shape)}"
            )
        num_keypoints = simcc_x.shape[1]
        total = simcc_x.new_zeros((), dtype=torch.float32)
        for logits, labels in ((simcc_x, target_x), (simcc_y, target_y)):
            per_keypoint = simcc_kl_divergence(logits, labels, self.beta, self.label_beta)
            if self.use_target_weight:
                per_keypoint = per_keypoint * weights.float()
            total = total + per_keypoint.sum()
        return total / num_keypoints
