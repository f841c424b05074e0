"""Distillation wrappers on real RTMPose networks (tiny input, few keypoints, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwpose_ctrl.codec import default_simcc_sigma, encode_simcc
from dwpose_ctrl.models.checkpoints import build_from_state_dict, load_state_dict
from dwpose_ctrl.models.rtmpose import build_rtmpose
from training.distill import Stage1Distiller, Stage2SelfDistiller, initial_student_head
from training.losses import SimccKLLoss

INPUT_SIZE = (64, 64)
KEYPOINTS = 17


def _labelled_batch(seed: int, batch: int = 4):
    generator = np.random.default_rng(seed)
    images = torch.from_numpy(generator.normal(size=(batch, 3, *INPUT_SIZE)).astype(np.float32))
    labels = [
        encode_simcc(
            generator.uniform(4, 60, size=(KEYPOINTS, 2)),
            (generator.uniform(size=KEYPOINTS) > 0.2).astype(np.float32),
            INPUT_SIZE,
            default_simcc_sigma(INPUT_SIZE),
        )
        for _ in range(batch)
    ]
    targets = tuple(
        torch.from_numpy(np.stack([getattr(lab, f) for lab in labels]))
        for f in ("target_x", "target_y", "weights")
    )
    return images, targets


def _gt_loss(simcc, targets):
    return SimccKLLoss()(*simcc, *targets)


def _state(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_rtmpose("s", INPUT_SIZE, KEYPOINTS)


def test_stage1_s_to_t_trains_the_student_and_leaves_the_teacher(teacher):
    torch.manual_seed(1)
    student = build_rtmpose("t", INPUT_SIZE, KEYPOINTS)
    distiller = Stage1Distiller(teacher, student, _gt_loss, input_size=INPUT_SIZE, max_epochs=10)
    align = distiller.distill_losses["loss_fea"].align
    assert (align.in_channels, align.out_channels) == (384, 512)
    distiller.train()
    teacher_before = _state(teacher)
    trainable = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    images, targets = _labelled_batch(0)
    totals = []
    for _ in range(4):
        terms = distiller.compute_loss(images, targets, epoch=2)
        optimizer.zero_grad()
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        totals.append(float(terms.total.detach()))
    assert terms.decay == pytest.approx(0.8)
    assert totals[-1] < totals[0]
    for name, value in _state(teacher).items():
        assert torch.equal(value, teacher_before[name]), name


def test_stage2_only_the_head_changes_and_the_result_loads_as_one_model(teacher, tmp_path):
    teacher_before = _state(teacher)
    head = initial_student_head(teacher, "scratch", lambda: build_rtmpose("s", INPUT_SIZE, KEYPOINTS).head)
    distiller = Stage2SelfDistiller(teacher, head)
    distiller.train()
    trainable = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    images, _ = _labelled_batch(1)
    head_before = _state(head)
    for _ in range(3):
        loss = distiller.compute_loss(images).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _state(teacher)
    assert all(torch.equal(after[name], value) for name, value in teacher_before.items())
    changed = {name for name, value in _state(head).items() if not torch.equal(value, head_before[name])}
    assert changed  # the head trained
    assert all(not p.requires_grad for p in distiller.student.backbone.parameters())

    # The distiller checkpoint reads back through the model zoo's official-checkpoint loader as
    # teacher backbone + student head, and so does the shipped single model.
    checkpoint = tmp_path / "stage2_distiller.pth"
    torch.save({"state_dict": distiller.state_dict()}, checkpoint)
    composed = build_from_state_dict(load_state_dict(checkpoint, part="stage2"))
    shipped = distiller.shipping_model()
    single = tmp_path / "stage2_model.pth"
    torch.save({"state_dict": shipped.state_dict()}, single)
    reloaded = build_from_state_dict(load_state_dict(single))
    for name, value in teacher_before.items():
        if name.startswith("backbone."):
            assert torch.equal(reloaded.state_dict()[name], value), name
    distiller.eval()
    with torch.no_grad():
        expected = distiller(images)
        for model in (composed, reloaded):
            actual = model(images)
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)
