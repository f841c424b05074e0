"""SimCC label encoding (dwpose_ctrl.codec) and the SimCC KL loss (training.losses), checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dwpose_ctrl.codec import decode_simcc, default_simcc_sigma, encode_simcc
from dwpose_ctrl.keypoints import COCO_BODY, COCO_WHOLEBODY, KeypointMetadata
from training.losses import SimccKLLoss


def test_published_sigmas():
    assert default_simcc_sigma((256, 192)) == (4.9, 5.66)
    assert default_simcc_sigma((384, 288)) == (6.0, 6.93)


def test_encode_shapes_peak_and_gaussian_values():
    labels = encode_simcc(np.array([[10.25, 20.75]]), np.array([1.0]), (256, 192), (4.9, 5.66))
    assert labels.target_x.shape == (1, 384) and labels.target_y.shape == (1, 512)
    assert labels.target_x.dtype == np.float32 and labels.weights.tolist() == [1.0]
    # mu = around(20.5) = 20 (half to even), around(41.5) = 42
    assert labels.target_x[0].argmax() == 20 and labels.target_y[0].argmax() == 42
    assert labels.target_x[0, 20] == 1.0
    assert labels.target_x[0, 23] == pytest.approx(math.exp(-9 / (2 * 4.9**2)), rel=1e-6)
    assert labels.target_y[0, 40] == pytest.approx(math.exp(-4 / (2 * 5.66**2)), rel=1e-6)


def test_encode_half_to_even_centres():
    keypoints = np.array([[0.25, 0.75], [1.25, 1.75]])  # 2x: 0.5, 1.5, 2.5, 3.5
    labels = encode_simcc(keypoints, np.ones(2), (64, 64), (2.0, 2.0))
    assert labels.target_x.argmax(axis=1).tolist() == [0, 2]
    assert labels.target_y.argmax(axis=1).tolist() == [2, 4]


def test_encode_invisible_and_window_outside_rules():
    sigma = (2.0, 3.0)  # radii 6 and 9 bins; bins 96 (x) and 128 (y) at 64x48
    keypoints = np.array(
        [
            [10.0, 10.0],  # invisible -> zero
            [(96 + 6) / 2, 10.0],  # mu_x - 3s = 96 >= 96 bins -> weight 0
            [(96 + 5) / 2, 10.0],  # mu_x - 3s = 95 < 96 -> kept (tail inside)
            [10.0, (-9 - 1) / 2],  # mu_y + 3s + 1 = 0, not < 0 -> kept
            [10.0, (-9 - 2) / 2],  # mu_y = -11 (half to even -5.5*2) -> -11+9+1 = -1 < 0 -> weight 0
            [10.0, 10.0],  # visibility 0.7 -> weight 0.7
        ]
    )
    visibility = np.array([0.4, 1, 1, 1, 1, 0.7])
    labels = encode_simcc(keypoints, visibility, (64, 48), sigma)
    assert labels.weights.tolist() == pytest.approx([0, 0, 1, 1, 0, 0.7])
    assert not labels.target_x[0].any() and not labels.target_y[0].any()
    assert not labels.target_x[1].any() and not labels.target_x[4].any()
    assert labels.target_x[2, 95] == pytest.approx(math.exp(-(6**2) / 8), rel=1e-6)
    assert labels.target_y[3, 0] == pytest.approx(math.exp(-(10**2) / 18), rel=1e-6)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(0, [191.5, 255.5], size=(133, 2))
    labels = encode_simcc(keypoints, np.ones(133), (256, 192), (4.9, 5.66))
    locations, scores = decode_simcc(labels.target_x[None], labels.target_y[None])
    np.testing.assert_array_equal(locations[0], np.around(keypoints * 2) / 2)
    assert np.all(scores == 1.0)


def test_encode_rejects_bad_shapes():
    with pytest.raises(ValueError, match="keypoints must be"):
        encode_simcc(np.zeros((3, 3)), np.ones(3), (64, 48), (2, 2))


def _hand_loss(logits_x, logits_y, labels_x, labels_y, weights, beta=10.0):
    """Direct transcription of the formula with Python floats."""
    total = 0.0
    for logits_all, labels_all in ((logits_x, labels_x), (logits_y, labels_y)):
        for n in range(logits_all.shape[0]):
            for k in range(logits_all.shape[1]):
                z = [beta * v for v in logits_all[n, k]]
                log_norm = math.log(sum(math.exp(v) for v in z))
                log_q = [v - log_norm for v in z]
                t = [beta * v for v in labels_all[n, k]]
                t_norm = sum(math.exp(v) for v in t)
                p = [math.exp(v) / t_norm for v in t]
                kl = sum(pi * (math.log(pi) - qi) for pi, qi in zip(p, log_q, strict=True)) / len(p)
                total += kl * weights[n, k]
    return total / logits_x.shape[1]


def test_simcc_kl_loss_matches_hand_computation():
    rng = np.random.default_rng(1)
    logits_x, logits_y = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 3, 6))
    labels_x, labels_y = rng.uniform(size=(2, 3, 8)), rng.uniform(size=(2, 3, 6))
    weights = np.array([[1.0, 0.0, 0.5], [1.0, 1.0, 0.0]])
    expected = _hand_loss(logits_x, logits_y, labels_x, labels_y, weights)
    loss = SimccKLLoss()(
        *(torch.tensor(a, dtype=torch.float64) for a in (logits_x, logits_y, labels_x, labels_y, weights))
    )
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_simcc_kl_loss_hand_value_and_zero_at_target():
    # one keypoint, 2 bins: logits (0, 0) -> q = (1/2, 1/2); labels (1, 0) -> p = softmax(10, 0)
    logits = torch.zeros(1, 1, 2)
    labels = torch.tensor([[[1.0, 0.0]]])
    p1 = 1 / (1 + math.exp(-10))
    p2 = 1 - p1
    kl = (p1 * math.log(p1 / 0.5) + p2 * math.log(p2 / 0.5)) / 2
    loss = SimccKLLoss()(logits, logits, labels, labels, torch.ones(1, 1))
    assert float(loss) == pytest.approx(2 * kl, rel=1e-6)
    # logits equal to the labels give zero loss (softmax(10*l) both sides)
    assert float(SimccKLLoss()(labels, labels, labels, labels, torch.ones(1, 1))) == pytest.approx(
        0, abs=1e-7
    )


def test_wholebody_metadata():
    meta = COCO_WHOLEBODY
    assert meta.num_keypoints == 133 and len(meta.sigmas) == 133
    assert meta.sigmas[:17] == (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                                0.107, 0.107, 0.087, 0.087, 0.089, 0.089)  # fmt: skip
    flip = meta.flip_indices
    assert np.array_equal(flip[flip], np.arange(133))  # an involution
    assert flip[1] == 2 and flip[17] == 20 and flip[91] == 112 and flip[132] == 111
    assert flip[23] == 39 and flip[31] == 31 and flip[23 + 36] == 23 + 45 and flip[23 + 62] == 23 + 62
    names = meta.names
    for left, right in meta.flip_pairs:
        if names[left].startswith(("left", "right")):
            assert names[left].replace("left", "right") == names[right]
    assert COCO_BODY.num_keypoints == 17


def test_metadata_validation():
    with pytest.raises(ValueError, match="sigmas"):
        KeypointMetadata("bad", ("a", "b"), (), (0.1,), {})
    with pytest.raises(ValueError, match="flip pair"):
        KeypointMetadata("bad", ("a", "b"), ((0, 2),), (0.1, 0.1), {})
