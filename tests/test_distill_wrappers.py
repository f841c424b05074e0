"""Stage-1 and stage-2 distillation wrappers on small hand-built pose networks.

The networks here only have the shape the wrappers rely on (``backbone(x)`` -> feature map,
``head(feature)`` -> (simcc_x, simcc_y)); the real RTMPose networks are exercised in
``test_distill_training.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.distill import (
    Stage1Distiller,
    Stage2SelfDistiller,
    feature_channels,
    initial_student_head,
)
from training.distill_losses import FeatureDistillLoss, LogitDistillLoss

INPUT_SIZE = (16, 12)
KEYPOINTS = 5


class _Head(nn.Module):
    def __init__(self, channels: int, feature_hw: tuple[int, int]):
        super().__init__()
        self.final_layer = nn.Conv2d(channels, KEYPOINTS, 1)
        flat = feature_hw[0] * feature_hw[1]
        self.cls_x = nn.Linear(flat, 2 * INPUT_SIZE[1])
        self.cls_y = nn.Linear(flat, 2 * INPUT_SIZE[0])

    def forward(self, feature):
        tokens = self.final_layer(feature).flatten(2)
        return self.cls_x(tokens), self.cls_y(tokens)


class _PoseNet(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(channels), nn.SiLU()
        )
        self.head = _Head(channels, (INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4))

    def forward(self, inputs):
        return self.head(self.backbone(inputs))


def _gt_loss(simcc, batch):
    return sum(((axis - target) ** 2).mean() for axis, target in zip(simcc, batch, strict=True))


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(4, 3, *INPUT_SIZE, generator=generator)
    targets = (
        torch.randn(4, KEYPOINTS, 2 * INPUT_SIZE[1], generator=generator),
        torch.randn(4, KEYPOINTS, 2 * INPUT_SIZE[0], generator=generator),
    )
    return inputs, targets


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_feature_channels_reads_the_last_backbone_map():
    assert feature_channels(_PoseNet(6), INPUT_SIZE) == 6


def test_stage1_total_is_gt_plus_decayed_feature_and_logit_terms():
    torch.manual_seed(0)
    teacher, student = _PoseNet(8), _PoseNet(4)
    distiller = Stage1Distiller(teacher, student, _gt_loss, input_size=INPUT_SIZE, max_epochs=4)
    distiller.train()
    inputs, targets = _batch()
    terms = distiller.compute_loss(inputs, targets, epoch=1)
    assert terms.decay == pytest.approx(0.75)

    teacher_feature = teacher.backbone(inputs)
    student_feature = student.backbone(inputs)
    feature = FeatureDistillLoss(4, 8)
    feature.load_state_dict(distiller.distill_losses["loss_fea"].state_dict())
    expected_feature = feature(student_feature, teacher_feature)
    expected_logit = LogitDistillLoss(beta=10.0, weight=0.1)(
        student.head(student_feature), teacher.head(teacher_feature)
    )
    expected_gt = _gt_loss(student.head(student_feature), targets)
    torch.testing.assert_close(terms.feature, expected_feature)
    torch.testing.assert_close(terms.logit, expected_logit)
    torch.testing.assert_close(terms.gt, expected_gt)
    torch.testing.assert_close(terms.total, expected_gt + 0.75 * (expected_feature + expected_logit))
    assert set(terms.as_log_dict()) == {"loss", "loss_gt", "loss_fea", "loss_logit", "distill_decay"}


def test_stage1_keeps_teacher_frozen_in_eval_mode_and_trains_student_and_align():
    torch.manual_seed(1)
    teacher, student = _PoseNet(8), _PoseNet(4)
    distiller = Stage1Distiller(teacher, student, _gt_loss, input_size=INPUT_SIZE, max_epochs=2)
    distiller.train()
    assert not distiller.teacher.training
    assert distiller.student.training
    assert all(not p.requires_grad for p in distiller.teacher.parameters())
    trainable = [p for p in distiller.parameters() if p.requires_grad]
    align = distiller.distill_losses["loss_fea"].align
    assert {id(p) for p in trainable} == {id(p) for p in [*student.parameters(), *align.parameters()]}
    teacher_before, student_before, align_before = _state(teacher), _state(student), _state(align)
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    for step in range(3):
        inputs, targets = _batch(step)
        optimizer.zero_grad()
        distiller.compute_loss(inputs, targets, epoch=0).total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
    for name, value in _state(teacher).items():
        assert torch.equal(value, teacher_before[name]), name  # BN running stats too: eval mode
    assert any(not torch.equal(v, student_before[k]) for k, v in _state(student).items())
    assert any(not torch.equal(v, align_before[k]) for k, v in _state(align).items())


def test_stage1_state_dict_uses_reference_distiller_names():
    distiller = Stage1Distiller(_PoseNet(8), _PoseNet(4), _gt_loss, input_size=INPUT_SIZE, max_epochs=2)
    keys = set(distiller.state_dict())
    assert "teacher.head.final_layer.weight" in keys
    assert "student.backbone.1.running_mean" in keys
    assert {"distill_losses.loss_fea.align.weight", "distill_losses.loss_fea.align.bias"} <= keys


def test_stage1_without_align_when_channels_match():
    distiller = Stage1Distiller(_PoseNet(4), _PoseNet(4), _gt_loss, input_size=INPUT_SIZE, max_epochs=2)
    assert distiller.distill_losses["loss_fea"].align is None


def test_stage1_rejects_models_without_backbone_and_head():
    with pytest.raises(TypeError, match="backbone"):
        Stage1Distiller(nn.Linear(2, 2), _PoseNet(4), _gt_loss, input_size=INPUT_SIZE, max_epochs=2)


@pytest.mark.parametrize("head_init", ["scratch", "teacher"])
def test_stage2_trains_only_the_head_and_keeps_the_backbone_bit_identical(head_init):
    torch.manual_seed(2)
    teacher = _PoseNet(6)
    head = initial_student_head(teacher, head_init, lambda: _Head(6, (4, 3)))
    assert head is not teacher.head
    if head_init == "teacher":
        for name, value in head.state_dict().items():
            assert torch.equal(value, teacher.head.state_dict()[name])
    distiller = Stage2SelfDistiller(teacher, head)
    distiller.train()
    assert distiller.student.backbone is distiller.teacher.backbone
    assert not distiller.teacher.backbone.training
    trainable = [p for p in distiller.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in head.parameters()}
    teacher_before, head_before = _state(teacher), _state(head)
    optimizer = torch.optim.SGD(trainable, lr=0.002)
    losses = []
    inputs, _ = _batch(0)
    for _ in range(4):
        optimizer.zero_grad()
        terms = distiller.compute_loss(inputs)
        assert terms.gt is None and terms.feature is None and terms.decay == 1.0
        terms.total.backward()
        optimizer.step()
        losses.append(float(terms.total.detach()))
    for name, value in _state(teacher).items():
        assert torch.equal(value, teacher_before[name]), name
    if head_init == "scratch":
        assert any(not torch.equal(v, head_before[k]) for k, v in _state(head).items())
        assert losses[-1] < losses[0]
    else:
        # With an eval-mode teacher, a head copied from the teacher is a fixed point: zero loss,
        # zero gradient, the head stays the teacher's (documented in docs/distillation.md).
        assert max(losses) == pytest.approx(0.0, abs=1e-6)
        assert all(torch.equal(v, head_before[k]) for k, v in _state(head).items())

    shipped = distiller.shipping_model()
    shipped_state = shipped.state_dict()
    for name, value in teacher_before.items():
        if name.startswith("backbone."):
            assert torch.equal(shipped_state[name], value), name
    for name, value in head.state_dict().items():
        assert torch.equal(shipped_state[f"head.{name}"], value), name
    inputs, _ = _batch(5)
    with torch.no_grad():
        distiller.eval()
        torch.testing.assert_close(shipped(inputs), distiller(inputs), rtol=0, atol=0)


def test_stage2_uses_weight_one_and_no_gt():
    torch.manual_seed(3)
    teacher = _PoseNet(6)
    head = _Head(6, (4, 3))
    distiller = Stage2SelfDistiller(teacher, head)
    inputs, _ = _batch(0)
    with torch.no_grad():
        feature = teacher.backbone(inputs)
        expected = LogitDistillLoss(beta=10.0, weight=1.0)(head(feature), teacher.head(feature))
    torch.testing.assert_close(distiller.compute_loss(inputs).total, expected)


def test_stage2_head_init_must_be_known():
    with pytest.raises(ValueError, match="head_init"):
        initial_student_head(_PoseNet(6), "pretrained", lambda: _Head(6, (4, 3)))
    teacher = _PoseNet(6)
    with pytest.raises(ValueError, match="own module"):
        Stage2SelfDistiller(teacher, teacher.head)
