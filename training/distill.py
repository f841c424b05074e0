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
import os
import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dwpose_ctrl.models import RTMPose, build_from_state_dict, build_rtmpose, load_state_dict
from training.config import (
    CONFIG_DIR,
    ConfigFileError,
    ModelConfig,
    TrainConfig,
    config_file_errors,
    shipped_config,
)
from training.distill_losses import (
    FEATURE_LOSS_WEIGHT,
    LOGIT_LOSS_BETA,
    STAGE1_LOGIT_WEIGHT,
    STAGE2_LOGIT_WEIGHT,
    FeatureDistillLoss,
    LogitDistillLoss,
    distill_decay,
)
from training.engine import SimccBatchLoss, TrainSummary, build_model, train, warn_if_random_backbone

Simcc = tuple[torch.Tensor, torch.Tensor]
GtLoss = Callable[[Simcc, Any], torch.Tensor]
"""``gt_loss((simcc_x, simcc_y), batch) -> scalar``: the SimCC KL loss against the batch's labels."""

HeadInit = Literal["scratch", "teacher"]
HEAD_INITS: tuple[str, ...] = ("scratch", "teacher")
DISTILLER_PARTS: tuple[str, ...] = ("auto", "student", "teacher", "stage2")


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

    def shipping_model(self) -> nn.Module:
        """The network that ships after stage 1: the student (the align conv is training-only)."""
        return self.student

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

    def shipping_model(self) -> nn.Module:
        """One standalone model: the teacher's backbone with the student head in its place."""
        model = copy.deepcopy(self.teacher)
        model.head = copy.deepcopy(self.student.head)
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model.eval()


# --- configs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherConfig:
    """Where the frozen teacher comes from.

    ``checkpoint``: one of our checkpoints (``best.pth``/``last.pth``/``.safetensors``) or an
    official mmpose/DWPose one; ``part`` picks the network inside a distiller checkpoint
    (``student``, ``teacher``, ``stage2`` or ``auto``, see ``dwpose_ctrl.models.unwrap_state_dict``).
    ``size`` (t/s/m/l/x), when set, is checked against the size read from the weights.
    Relative paths are resolved against the current directory.
    """

    checkpoint: str = ""
    part: str = "auto"
    size: str | None = None
    allow_unsafe_pickle: bool = False


@dataclass(frozen=True)
class Stage1Config:
    """Stage 1: ``train`` describes the student (model, data, optimiser, schedule, EMA, ...)."""

    train: TrainConfig
    teacher: TeacherConfig
    feature_weight: float = FEATURE_LOSS_WEIGHT
    logit_weight: float = STAGE1_LOGIT_WEIGHT
    beta: float = LOGIT_LOSS_BETA

    def __post_init__(self) -> None:
        _check_teacher_config(self.teacher)


@dataclass(frozen=True)
class Stage2Config:
    """Stage 2: ``train.model`` must describe the stage-1 model that ``teacher`` loads.

    ``head_init`` is ``scratch`` (the reference: a freshly initialised head) or ``teacher`` (the
    paper's fine-tuning: a copy of the teacher's head; with our eval-mode teacher this copy starts
    at zero loss and zero gradient, so it stays the teacher's head).
    """

    train: TrainConfig
    teacher: TeacherConfig
    head_init: str = "scratch"
    logit_weight: float = STAGE2_LOGIT_WEIGHT
    beta: float = LOGIT_LOSS_BETA

    def __post_init__(self) -> None:
        _check_teacher_config(self.teacher)
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")


DistillConfig = Stage1Config | Stage2Config


def _check_teacher_config(teacher: TeacherConfig) -> None:
    if not isinstance(teacher, TeacherConfig):
        raise TypeError(f"teacher must be a TeacherConfig, got {type(teacher).__name__}")
    if teacher.part not in DISTILLER_PARTS:
        raise ValueError(f"teacher.part must be one of {DISTILLER_PARTS}, got {teacher.part!r}")


def load_distill_config(name_or_path: str | os.PathLike, stage: int) -> DistillConfig:
    """A :class:`Stage1Config` (``stage=1``) or :class:`Stage2Config` (``stage=2``) from a config file.

    ``name_or_path`` is a file, or the name of one in ``training/configs`` (e.g.
    ``distill_l_to_t_256x192``); the file defines ``CONFIG``.
    """
    expected = {1: Stage1Config, 2: Stage2Config}.get(stage)
    if expected is None:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    path = shipped_config(name_or_path) or Path(name_or_path)
    if not path.is_file():
        candidate = CONFIG_DIR / f"{Path(str(name_or_path)).stem}.py"
        if not candidate.is_file():
            known = sorted(p.stem for p in CONFIG_DIR.glob("*distill_*.py"))
            raise FileNotFoundError(f"config {name_or_path!r} is neither a file nor one of {known}")
        path = candidate
    with config_file_errors(path):
        config = runpy.run_path(str(path)).get("CONFIG")
    if not isinstance(config, expected):
        command = "distill" if stage == 1 else "self-distill"
        raise ConfigFileError(
            f"{path} must define CONFIG = {expected.__name__}(...) for `{command}`, "
            f"found {type(config).__name__}"
        )
    return config


# --- tasks for the engine ------------------------------------------------------------------------


def load_teacher(teacher: TeacherConfig, model: ModelConfig) -> nn.Module:
    """The teacher network, checked to fit the student's input size and keypoint count."""
    if not teacher.checkpoint:
        raise ValueError(
            "teacher.checkpoint is empty; set it in the config or with --set teacher.checkpoint=PATH"
        )
    if not Path(teacher.checkpoint).is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {teacher.checkpoint} does not exist (train the teacher first, or point "
            "teacher.checkpoint at an official mmpose/DWPose checkpoint)"
        )
    state = load_state_dict(teacher.checkpoint, teacher.part, teacher.allow_unsafe_pickle)
    network = build_from_state_dict(state)
    if not isinstance(network, RTMPose):
        raise ValueError(f"{teacher.checkpoint} holds a {type(network).__name__}, not an RTMPose model")
    if teacher.size is not None and network.size != teacher.size:
        raise ValueError(
            f"{teacher.checkpoint} is RTMPose-{network.size}, the config expects RTMPose-{teacher.size}"
        )
    expected = (tuple(model.input_size), model.metadata.num_keypoints)
    if (tuple(network.input_size), network.num_keypoints) != expected:
        raise ValueError(
            f"the teacher takes {network.input_size[0]}x{network.input_size[1]} input with "
            f"{network.num_keypoints} keypoints but the student {expected[0][0]}x{expected[0][1]} with "
            f"{expected[1]}: logit distillation needs both equal"
        )
    return network


def stage1_task(config: Stage1Config, train_config: TrainConfig | None = None) -> Stage1Distiller:
    """The stage-1 task: the student of ``train_config`` (default ``config.train``) and the teacher."""
    train_config = train_config or config.train
    warn_if_random_backbone(train_config)
    return Stage1Distiller(
        load_teacher(config.teacher, train_config.model),
        build_model(train_config),
        SimccBatchLoss(),
        input_size=tuple(train_config.model.input_size),
        max_epochs=train_config.schedule.max_epochs,
        feature_weight=config.feature_weight,
        logit_weight=config.logit_weight,
        beta=config.beta,
    )


def stage2_task(config: Stage2Config, train_config: TrainConfig | None = None) -> Stage2SelfDistiller:
    """The stage-2 task: the stage-1 model as teacher and a student head per ``head_init``."""
    train_config = train_config or config.train
    model = train_config.model
    teacher = load_teacher(config.teacher, model)
    if teacher.size != model.size:
        raise ValueError(
            f"stage 2 distils a model into itself: the teacher is RTMPose-{teacher.size} but "
            f"train.model.size is {model.size!r}"
        )

    def fresh_head() -> nn.Module:
        return build_rtmpose(model.size, tuple(model.input_size), model.metadata.num_keypoints).head

    head = initial_student_head(teacher, config.head_init, fresh_head)
    return Stage2SelfDistiller(teacher, head, logit_weight=config.logit_weight, beta=config.beta)


def run_stage(
    config: DistillConfig,
    work_dir: str | os.PathLike,
    device: str | None = None,
    resume: bool = True,
    progress: bool = True,
    skip_bad_samples: bool = False,
) -> TrainSummary:
    """Train one distillation stage with the training engine (``train`` loop, checkpoints, logs).

    ``work_dir/last.pth`` and ``best.pth`` hold the shipping model under ``state_dict``: the
    student after stage 1, teacher backbone + student head after stage 2.
    """
    factory = stage1_task if isinstance(config, Stage1Config) else stage2_task
    if not isinstance(config, (Stage1Config, Stage2Config)):
        raise TypeError(f"config must be a Stage1Config or Stage2Config, got {type(config).__name__}")
    return train(
        config.train,
        work_dir,
        task_factory=lambda train_config: factory(config, train_config),
        device=device,
        resume=resume,
        progress=progress,
        skip_bad_samples=skip_bad_samples,
    )
