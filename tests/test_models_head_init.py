"""The RTMCC head starts as mmpose builds it (RTMCCHead.default_init_cfg, SPEC section 13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_asset

from dwpose_ctrl.codec import encode_simcc
from dwpose_ctrl.models import build_rtmpose, load_state_dict
from training.losses import SimccKLLoss

# SPEC section 13, written out independently of the model code.
NORMAL_001 = ("head.final_layer.weight",)
NORMAL_01 = (
    "head.mlp.1.weight",
    "head.gau.uv.weight",
    "head.gau.o.weight",
    "head.cls_x.weight",
    "head.cls_y.weight",
)
ONES = ("head.mlp.0.g", "head.gau.ln.g", "head.gau.res_scale.scale")
UNIFORM_01 = ("head.gau.gamma", "head.gau.beta")


@pytest.fixture(scope="module")
def head_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_rtmpose("t", (256, 192), 133).state_dict()


def test_head_tensors_have_mmpose_init_statistics(head_state):
    for name in NORMAL_001:
        assert float(head_state[name].std()) == pytest.approx(0.001, rel=0.02), name
        assert abs(float(head_state[name].mean())) < 1e-5, name
    for name in NORMAL_01:
        assert float(head_state[name].std()) == pytest.approx(0.01, rel=0.03), name
        assert abs(float(head_state[name].mean())) < 1e-3, name
    assert torch.count_nonzero(head_state["head.final_layer.bias"]) == 0
    for name in ONES:
        assert torch.equal(head_state[name], torch.ones_like(head_state[name])), name
    for name in UNIFORM_01:
        values = head_state[name]
        assert float(values.min()) >= 0 and float(values.max()) < 1, name
        assert float(values.std()) == pytest.approx(12**-0.5, rel=0.15), name


def test_head_init_matches_an_mmpose_built_model(head_state):
    """The mmpose 1.3.2 fixture's head (its cls_x / cls_y were rescaled by its maker, so they are
    not compared) has the same per-tensor statistics as ours."""
    reference = load_state_dict(require_asset("fixtures/rtmpose-t_256x192_mmpose_random.pth"))
    for name in (*NORMAL_001, "head.mlp.1.weight", "head.gau.uv.weight", "head.gau.o.weight"):
        ours, theirs = float(head_state[name].std()), float(reference[name].float().std())
        assert ours == pytest.approx(theirs, rel=0.03), name
    for name in ("head.final_layer.bias", *ONES):
        assert torch.equal(head_state[name], reference[name]), name


def test_first_loss_is_that_of_near_uniform_logits():
    """At mmpose's init the logits are nearly flat, so the first loss is the loss of all-zero
    logits (0.49 for these 16 crops), not the 15-58 of PyTorch's default Linear init."""
    torch.manual_seed(0)
    model = build_rtmpose("t", (128, 96), 17).eval()
    rng = np.random.default_rng(0)
    batch = 16
    keypoints = rng.uniform([8, 8], [88, 120], (batch, 17, 2))
    labels = [encode_simcc(points, np.ones(17), (128, 96), (4.9, 5.66)) for points in keypoints]
    target_x = torch.from_numpy(np.stack([label.target_x for label in labels]))
    target_y = torch.from_numpy(np.stack([label.target_y for label in labels]))
    weights = torch.from_numpy(np.stack([label.weights for label in labels]))
    images = torch.from_numpy(rng.normal(0, 1, (batch, 3, 128, 96)).astype(np.float32))
    loss = SimccKLLoss()
    with torch.no_grad():
        simcc_x, simcc_y = model(images)
        first = float(loss(simcc_x, simcc_y, target_x, target_y, weights))
    flat = float(loss(torch.zeros_like(simcc_x), torch.zeros_like(simcc_y), target_x, target_y, weights))
    assert flat == pytest.approx(0.49, abs=0.01)
    assert first == pytest.approx(flat, rel=1e-4)
    assert float(simcc_x.abs().max()) < 1e-4
