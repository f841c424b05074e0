"""DWPose two-stage distillation (SPEC section 10) as model wrappers for the training engine.

Both stages wrap two ``dwpose_ctrl.models`` networks (anything with ``backbone(x)`` returning the
last, stride-32 feature map and ``head(feature)`` returning ``(simcc_x, simcc_y)``) and compute the
total loss of a batch; the engine's loop (optimiser, schedule, EMA, AMP, DDP, checkpoints) trains
whatever parameters still require gradients.

* :class:`Stage1Distiller`: a frozen teacher in eval mode (the reference leaves the teacher's
  BatchNorm in train mode; we do not, so the teacher's outputs do not depend on the batch) and a
  student trained with ``L_gt + r(t) * (L_fea + L_logit)``; the feature-alignment 1x1 conv trains
  with the student.
* :class:`Stage2SelfDistiller`: the stage-1 model frozen as teacher; the student shares the
  teacher's backbone (frozen, eval mode) and only its head trains, with the logit loss at weight 1,
  no GT loss and no decay. :meth:`Stage2SelfDistiller.shipping_model` is the one model that ships:
  teacher backbone + student head.

Attribute names mirror the reference distiller (``teacher.*``, ``student.*``,
``distill_losses.loss_fea.align.*``), so checkpoint keys read the same as the official ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from training.distill_losses import (
    FEATURE_LOSS_WEIGHT,
    LOGIT_LOSS_BETA,
    STAGE1_LOGIT_WEIGHT,
    STAGE2_LOGIT_WEIGHT,
    FeatureDistillLoss,
    LogitDistillLoss,
    distill_decay,
)

Simcc = tuple[torch.Tensor, torch.Tensor]
GtLoss = Callable[[Simcc, Any], torch.Tensor]
"""``gt_loss((simcc_x, simcc_y), batch) -> scalar``: the SimCC KL loss against the batch's labels."""

HeadInit = Literal["scratch", "teacher"]
HEAD_INITS: tuple[str, ...] = ("scratch", "teacher")


@dataclass(frozen=True)
class DistillLossTerms:
    """The loss of one batch and its parts (``None`` where a stage has no such term)."""

    total: torch.Tensor
    logit: torch.Tensor
    feature: torch.Tensor | None = None
    gt: torch.Tensor | None = None
    decay: float = 1.0

    def as_log_dict(self) -> dict[str, float]:
        """Plain floats for the CSV/TensorBoard logs."""
        values = {"loss": float(self.total.detach()), "loss_logit": float(self.logit.detach())}
        if self.feature is not None:
            values["loss_fea"] = float(self.feature.detach())
        if self.gt is not None:
            values["loss_gt"] = float(self.gt.detach())
        values["distill_decay"] = float(self.decay)
        return values


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients into ``module`` and put it in eval mode; returns it."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def _check_pose_model(model: nn.Module, role: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"the {role} must be a torch.nn.Module (a dwpose_ctrl.models RTMPose), got {type(model)}"
        )
    for part in ("backbone", "head"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise TypeError(
                f"the {role} needs a `{part}` submodule (build it with dwpose_ctrl.models.build_rtmpose)"
            )


def feature_channels(model: nn.Module, input_size: tuple[int, int]) -> int:
    """Channel count of the model's last backbone feature map, measured on a zero input."""
    was_training = model.training
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            dummy = torch.zeros(1, 3, *input_size, dtype=parameter.dtype, device=parameter.device)
            channels = int(model.backbone(dummy).shape[1])
    finally:
        model.train(was_training)
    return channels


class Stage1Distiller(nn.Module):
    """Stage 1: ``L = L_gt + r(t) * (L_fea + L_logit)`` with a frozen, eval-mode teacher."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        gt_loss: GtLoss,
        *,
        input_size: tuple[int, int],
        max_epochs: int,
        feature_weight: float = FEATURE_LOSS_WEIGHT,
        logit_weight: float = STAGE1_LOGIT_WEIGHT,
        beta: float = LOGIT_LOSS_BETA,
    ):
        super().__init__()
        _check_pose_model(teacher, "teacher")
        _check_pose_model(student, "student")
        if not callable(gt_loss):
            raise TypeError("gt_loss must be callable as gt_loss((simcc_x, simcc_y), batch)")
        if max_epochs <= 0:
            raise ValueError(f"max_epochs must be positive, got {max_epochs}")
        self.teacher = freeze(teacher)
        self.student = student
        self.gt_loss = gt_loss
        self.max_epochs = max_epochs
        self.distill_losses = nn.ModuleDict(
            {
                "loss_fea": FeatureDistillLoss(
                    feature_channels(student, input_size),
                    feature_channels(teacher, input_size),
                    feature_weight,
                ),
                "loss_logit": LogitDistillLoss(beta=beta, weight=logit_weight),
            }
        )

    def train(self, mode: bool = True) -> Stage1Distiller:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, inputs: torch.Tensor) -> Simcc:
        """The student's SimCC logits (what validation and export see)."""
        return self.student(inputs)

    def compute_loss(self, inputs: torch.Tensor, batch: Any, epoch: int) -> DistillLossTerms:
        """Total stage-1 loss of a batch at 0-based ``epoch``."""
        with torch.no_grad():
            teacher_feature = self.teacher.backbone(inputs)
            teacher_simcc = self.teacher.head(teacher_feature)
        student_feature = self.student.backbone(inputs)
        student_simcc = self.student.head(student_feature)
        gt = self.gt_loss(student_simcc, batch)
        feature = self.distill_losses["loss_fea"](student_feature, teacher_feature)
        logit = self.distill_losses["loss_logit"](student_simcc, teacher_simcc)
        decay = distill_decay(epoch, self.max_epochs)
        return DistillLossTerms(
            total=gt + decay * (feature + logit), logit=logit, feature=feature, gt=gt, decay=decay
        )


def initial_student_head(
    teacher: nn.Module, head_init: HeadInit, build_fresh_head: Callable[[], nn.Module]
) -> nn.Module:
    """The stage-2 student head: a fresh one (reference) or a trainable copy of the teacher's (paper)."""
    if head_init == "scratch":
        return build_fresh_head()
    if head_init == "teacher":
        head = copy.deepcopy(teacher.head)
        for parameter in head.parameters():
            parameter.requires_grad_(True)
        return head
    raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")


class _SharedBackboneStudent(nn.Module):
    """Stage-2 student: the teacher's backbone object (not a copy) plus its own head."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, inputs: torch.Tensor) -> Simcc:
        return self.head(self.backbone(inputs))


class Stage2SelfDistiller(nn.Module):
    """Stage 2 (head-aware self-KD): only the student head trains, on ``L_logit`` at weight 1."""

    def __init__(
        self,
        teacher: nn.Module,
        student_head: nn.Module,
        *,
        logit_weight: float = STAGE2_LOGIT_WEIGHT,
        beta: float = LOGIT_LOSS_BETA,
    ):
        super().__init__()
        _check_pose_model(teacher, "teacher")
        if not isinstance(student_head, nn.Module):
            raise TypeError(f"student_head must be a torch.nn.Module, got {type(student_head)}")
        if student_head is teacher.head:
            raise ValueError("the student head must be its own module; use initial_student_head(...)")
        self.teacher = freeze(teacher)
        self.student = _SharedBackboneStudent(self.teacher.backbone, student_head)
        self.distill_losses = nn.ModuleDict({"loss_logit": LogitDistillLoss(beta=beta, weight=logit_weight)})

    def train(self, mode: bool = True) -> Stage2SelfDistiller:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, inputs: torch.Tensor) -> Simcc:
        """The student's SimCC logits (teacher backbone + student head)."""
        return self.student(inputs)

    def compute_loss(self, inputs: torch.Tensor, batch: Any = None, epoch: int = 0) -> DistillLossTerms:
        """Stage-2 loss of a batch: no GT term, no decay (``batch`` and ``epoch`` are not used)."""
        with torch.no_grad():
            feature = self.teacher.backbone(inputs)
            teacher_simcc = self.teacher.head(feature)
        student_simcc = self.student.head(feature)
        logit = self.distill_losses["loss_logit"](student_simcc, teacher_simcc)
        return DistillLossTerms(total=logit, logit=logit)

    def shipping_model(self, student_head: nn.Module | None = None) -> nn.Module:
        """One standalone model: the teacher (backbone and all) with the student head in place.

        ``student_head`` overrides the head to ship (e.g. the engine's EMA copy of it); the
        backbone always comes from the frozen teacher, never from an averaged copy.
        """
        model = copy.deepcopy(self.teacher)
        model.head = copy.deepcopy(self.student.head if student_head is None else student_head)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model.eval()
