"""DWPose distillation losses (SPEC section 10): feature KD, logit KD and the stage-1 decay.

* :class:`FeatureDistillLoss`: ``sum((align(F_s) - F_t)^2) / N * 7e-5`` on the last (stride-32)
  backbone feature maps; ``align`` is a 1x1 convolution with bias when the channel counts differ.
* :class:`LogitDistillLoss`: both SimCC logit sets scaled by ``beta`` (10); per axis the KL
  divergence ``KL(softmax(t) || log_softmax(s))`` summed over bins and keypoints, averaged over
  the batch; x and y added, divided by K, times ``weight`` (0.1 in stage 1, 1 in stage 2).
  Every keypoint counts, visible or not.
* :func:`distill_decay`: ``r(t) = 1 - epoch / max_epochs`` (epoch 0-based), which scales the
  stage-1 distillation terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_LOSS_WEIGHT = 7e-5
LOGIT_LOSS_BETA = 10.0
STAGE1_LOGIT_WEIGHT = 0.1
STAGE2_LOGIT_WEIGHT = 1.0


def distill_decay(epoch: int, max_epochs: int) -> float:
    """The stage-1 weight ``1 - epoch / max_epochs`` of the distillation terms (epoch is 0-based)."""
    if max_epochs <= 0:
        raise ValueError(f"max_epochs must be positive, got {max_epochs}")
    if not 0 <= epoch <= max_epochs:
        raise ValueError(f"epoch must lie in [0, max_epochs={max_epochs}], got {epoch}")
    return 1.0 - epoch / max_epochs


class FeatureDistillLoss(nn.Module):
    """Squared error between the student's (aligned) and the teacher's last feature maps.

    ``align`` is a trainable 1x1 convolution (with bias) from the student's to the teacher's
    channel count, created only when they differ; it belongs to the distillation wrapper, not to
    the student network that gets exported.
    """

    def __init__(self, student_channels: int, teacher_channels: int, weight: float = FEATURE_LOSS_WEIGHT):
        super().__init__()
        if student_channels <= 0 or teacher_channels <= 0:
            raise ValueError(
                f"channel counts must be positive, got student {student_channels}, teacher {teacher_channels}"
            )
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.weight = weight
        self.align: nn.Module | None = None
        if student_channels != teacher_channels:
            self.align = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
        if student_feature.ndim != 4 or teacher_feature.ndim != 4:
            raise ValueError(
                "feature maps must be (N, C, H, W), got "
                f"{tuple(student_feature.shape)} and {tuple(teacher_feature.shape)}"
            )
        if student_feature.shape[1] != self.student_channels:
            raise ValueError(
                f"student feature has {student_feature.shape[1]} channels, the loss was built for "
                f"{self.student_channels}"
            )
        aligned = student_feature if self.align is None else self.align(student_feature)
        if aligned.shape != teacher_feature.shape:
            raise ValueError(
                f"aligned student feature {tuple(aligned.shape)} does not match the teacher's "
                f"{tuple(teacher_feature.shape)}: teacher and student need the same input size"
            )
        batch = student_feature.shape[0]
        return (aligned - teacher_feature.detach()).pow(2).sum() / batch * self.weight


class LogitDistillLoss(nn.Module):
    """KL divergence between the teacher's and the student's beta-scaled SimCC distributions."""

    def __init__(self, beta: float = LOGIT_LOSS_BETA, weight: float = STAGE1_LOGIT_WEIGHT):
        super().__init__()
        self.beta = beta
        self.weight = weight

    def _axis_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        log_student = F.log_softmax(student_logits * self.beta, dim=-1)
        log_teacher = F.log_softmax(teacher_logits.detach() * self.beta, dim=-1)
        kl_per_bin = F.kl_div(log_student, log_teacher, reduction="none", log_target=True)
        return kl_per_bin.sum(dim=-1).sum(dim=-1).mean()

    def forward(
        self,
        student_simcc: tuple[torch.Tensor, torch.Tensor],
        teacher_simcc: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        student_x, student_y = student_simcc
        teacher_x, teacher_y = teacher_simcc
        for name, student, teacher in (("x", student_x, teacher_x), ("y", student_y, teacher_y)):
            if student.ndim != 3 or student.shape != teacher.shape:
                raise ValueError(
                    f"simcc_{name} of student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                    "must both be (N, K, bins) and equal: teacher and student need the same input size "
                    "and keypoint count"
                )
        num_keypoints = student_x.shape[1]
        total = self._axis_loss(student_x, teacher_x) + self._axis_loss(student_y, teacher_y)
        return total / num_keypoints * self.weight
