"""Backbone warm-up, for when no pose-pretrained backbone exists (own data, a new size, offline).

The published recipe never trains the RTMCC head on a random backbone: it loads a pose-pretrained
CSPNeXt (:mod:`training.pretrained`). From a random backbone the head's gated attention unit sits
on the SimCC mean-pose plateau. The warm-up trains the backbone with the GAU bypassed (the RTMCC
head without its GAU: a plain per-keypoint SimCC head on the backbone features), on the 17 body
keypoints and without augmentation, then checks that the backbone localises (held-out body AP
and error against the fixed mean pose, :mod:`training.localisation`) and writes
``WORK_DIR/backbone.pth`` for the normal recipe (``model.init_checkpoint``, ``init_kind='backbone'``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from training.config import TrainConfig
from training.data.transforms import AugmentationConfig
from training.engine import PoseTask, TrainSummary, build_model, train
from training.localisation import MAX_ERROR_RATIO, MIN_BODY_AP, LocalisationReport, localisation_report

BACKBONE_NAME = "backbone.pth"
GATE_NAME = "gate.json"
WARMUP_KEYPOINTS = "coco_body"


def bypass_gau(model: nn.Module) -> nn.Module:
    """``model`` with its head's gated attention unit replaced by the identity; returns ``model``."""
    model.head.gau = nn.Identity()
    return model


def warmup_config(config: TrainConfig) -> TrainConfig:
    """The warm-up run of a training config: same model size, input size, data, optimiser and
    schedule; a random backbone, the 17 body keypoints and no augmentation."""
    if config.data.val is None:
        raise ValueError("the warm-up gate needs a held-out set: set data.val in the config")
    none = AugmentationConfig.none()
    return replace(
        config,
        name=f"{config.name}_backbone-warmup",
        model=replace(config.model, keypoints=WARMUP_KEYPOINTS, sigma=None, init_checkpoint=None),
        augmentation=none,
        final_augmentation=none,
        final_stage_epochs=0,
    )


def warmup_task(config: TrainConfig) -> PoseTask:
    """The pose task of a warm-up: the config's RTMPose with the GAU bypassed."""
    return PoseTask(bypass_gau(build_model(config)))


def save_backbone(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model.backbone``'s tensors under mmpose names (``state_dict`` -> ``backbone.*``)."""
    path = Path(path)
    state = {
        f"backbone.{key}": value.detach().cpu().clone() for key, value in model.backbone.state_dict().items()
    }
    torch.save({"state_dict": state}, path)
    return path


def hand_over(config: TrainConfig, backbone: str | os.PathLike) -> TrainConfig:
    """``config`` starting from the warmed-up backbone (the head starts fresh)."""
    return replace(config, model=replace(config.model, init_checkpoint=str(backbone), init_kind="backbone"))


@dataclass(frozen=True)
class WarmupResult:
    """The warmed-up backbone's file, the gate's report and the training run's summary."""

    backbone: Path
    report: LocalisationReport
    summary: TrainSummary


def run_warmup(
    config: TrainConfig,
    work_dir: str | os.PathLike,
    device: str | None = None,
    progress: bool = True,
    min_body_ap: float = MIN_BODY_AP,
    max_error_ratio: float = MAX_ERROR_RATIO,
) -> WarmupResult:
    """Train ``warmup_config(config)`` in ``work_dir``, then write ``backbone.pth`` (the final EMA
    weights' backbone) and ``gate.json`` (the held-out localisation report)."""
    config = warmup_config(config)
    work_dir = Path(work_dir)
    summary = train(
        replace(config, data=replace(config.data, val=None)),
        work_dir,
        task_factory=warmup_task,
        device=device,
        progress=progress,
    )
    model = (summary.ema.module if summary.ema is not None else summary.task).model
    backbone = save_backbone(model, work_dir / BACKBONE_NAME)
    report = localisation_report(
        model,
        config,
        device=str(next(model.parameters()).device),
        min_body_ap=min_body_ap,
        max_error_ratio=max_error_ratio,
    )
    (work_dir / GATE_NAME).write_text(json.dumps(report.to_dict(), indent=2))
    return WarmupResult(backbone, report, summary)
