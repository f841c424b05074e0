"""Distillation losses (SPEC section 10) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.distill_losses import (
    FeatureDistillLoss,
    LogitDistillLoss,
    distill_decay,
)


def test_decay_is_linear_from_one_to_zero():
    assert distill_decay(0, 10) == 1.0
    assert distill_decay(3, 10) == pytest.approx(0.7)
    assert distill_decay(9, 10) == pytest.approx(0.1)
    assert distill_decay(10, 10) == 0.0


@pytest.mark.parametrize(("epoch", "max_epochs"), [(-1, 10), (11, 10), (0, 0)])
def test_decay_rejects_epochs_outside_the_schedule(epoch, max_epochs):
    with pytest.raises(ValueError, match="epoch"):
        distill_decay(epoch, max_epochs)


def test_feature_loss_same_channels_has_no_align_and_matches_hand_value():
    loss = FeatureDistillLoss(student_channels=1, teacher_channels=1)
    assert loss.align is None
    student = torch.tensor([[[[1.0, 2.0]]], [[[0.0, -1.0]]]])  # (N=2, C=1, H=1, W=2)
    teacher = torch.tensor([[[[0.0, 0.0]]], [[[1.0, 1.0]]]])
    # squared errors: 1 + 4 + 1 + 4 = 10; / N = 5; * 7e-5
    assert loss(student, teacher).item() == pytest.approx(5 * 7e-5, rel=1e-6)


def test_feature_loss_aligns_different_channel_counts_with_a_biased_1x1_conv():
    loss = FeatureDistillLoss(student_channels=2, teacher_channels=3)
    assert isinstance(loss.align, torch.nn.Conv2d)
    assert loss.align.kernel_size == (1, 1)
    assert loss.align.bias is not None
    with torch.no_grad():
        loss.align.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]).view(3, 2, 1, 1))
        loss.align.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
    student = torch.tensor([[1.0, 3.0]]).view(1, 2, 1, 1)
    # aligned = [1 + 0.5, 2 * 3, 1 + 3 - 1] = [1.5, 6, 3]
    teacher = torch.tensor([[0.5, 4.0, 3.0]]).view(1, 3, 1, 1)
    # squared errors 1 + 4 + 0 = 5; N = 1
    value = loss(student, teacher)
    assert value.item() == pytest.approx(5 * 7e-5, rel=1e-6)
    value.backward()
    assert loss.align.weight.grad is not None
    assert loss.align.bias.grad is not None


def test_feature_loss_does_not_backpropagate_into_the_teacher():
    loss = FeatureDistillLoss(student_channels=2, teacher_channels=2)
    student = torch.randn(2, 2, 3, 3, requires_grad=True)
    teacher = torch.randn(2, 2, 3, 3, requires_grad=True)
    loss(student, teacher).backward()
    assert student.grad is not None
    assert teacher.grad is None


def test_feature_loss_rejects_mismatched_maps():
    loss = FeatureDistillLoss(student_channels=2, teacher_channels=4)
    with pytest.raises(ValueError, match="channels"):
        loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="input size"):
        loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 3, 2))


def test_logit_loss_two_bins_by_hand():
    # beta 10: teacher x logits [0, ln3/10] -> softmax [1/4, 3/4]; student zeros -> [1/2, 1/2].
    teacher_x = torch.tensor([[[0.0, math.log(3.0) / 10]]])
    student_x = torch.zeros(1, 1, 2)
    # y: identical distributions, KL 0.
    teacher_y = torch.tensor([[[0.3, -0.2]]])
    student_y = teacher_y.clone()
    kl_x = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    loss = LogitDistillLoss()  # beta 10, weight 0.1
    value = loss((student_x, student_y), (teacher_x, teacher_y))
    assert value.item() == pytest.approx(kl_x / 1 * 0.1, rel=1e-5)


def _reference_logit_loss(student, teacher, beta, weight):
    """Plain loops over the SPEC formula, in float64."""
    total = 0.0
    num_keypoints = student[0].shape[1]
    for student_axis, teacher_axis in zip(student, teacher, strict=True):
        batch_sum = 0.0
        for n in range(student_axis.shape[0]):
            for k in range(num_keypoints):
                s = student_axis[n, k].astype(np.float64) * beta
                t = teacher_axis[n, k].astype(np.float64) * beta
                p = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
                log_q = s - s.max() - math.log(np.exp(s - s.max()).sum())
                batch_sum += float(np.sum(p * (np.log(p) - log_q)))
        total += batch_sum / student_axis.shape[0]
    return total / num_keypoints * weight


def test_logit_loss_counts_every_keypoint_and_averages_over_the_batch():
    generator = np.random.default_rng(0)
    student = (generator.normal(size=(3, 5, 8)), generator.normal(size=(3, 5, 6)))
    teacher = (generator.normal(size=(3, 5, 8)), generator.normal(size=(3, 5, 6)))
    student_t = tuple(torch.tensor(a, dtype=torch.float32) for a in student)
    teacher_t = tuple(torch.tensor(a, dtype=torch.float32) for a in teacher)
    for weight in (0.1, 1.0):
        value = LogitDistillLoss(beta=10.0, weight=weight)(student_t, teacher_t).item()
        assert value == pytest.approx(_reference_logit_loss(student, teacher, 10.0, weight), rel=1e-4)


def test_logit_loss_is_zero_for_equal_logits_and_only_trains_the_student():
    student_x = torch.randn(2, 4, 6, requires_grad=True)
    student_y = torch.randn(2, 4, 5, requires_grad=True)
    teacher_x = student_x.detach().clone().requires_grad_(True)
    teacher_y = student_y.detach().clone().requires_grad_(True)
    value = LogitDistillLoss()((student_x, student_y), (teacher_x, teacher_y))
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    LogitDistillLoss()((student_x, student_y), (teacher_x + 1.0 * torch.arange(6), teacher_y)).backward()
    assert student_x.grad is not None and student_x.grad.abs().sum() > 0
    assert teacher_x.grad is None


def test_logit_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="input size"):
        LogitDistillLoss()(
            (torch.zeros(1, 2, 8), torch.zeros(1, 2, 6)), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 7))
        )
