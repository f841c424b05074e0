"""Recipe values matched to mmpose's / DWPose's configs (docs/training.md, "Differences from the
official recipe"): RTMPose-x's augmentation and clipping, no automatic lr scaling, DWPose stage 2's
flat lr and strong pipeline, the feet in the half-body lower body, UBody sampling."""

from __future__ import annotations

import numpy as np
import pytest

from dwpose_ctrl.keypoints import COCO_BODY, COCO_WHOLEBODY
from training.config import load_config
from training.data.transforms import AugmentationConfig, CropState, half_body_box
from training.distill import load_distill_config
from training.engine import learning_rate


@pytest.mark.parametrize("name", ["rtmpose_x_256x192", "rtmpose_x_384x288"])
def test_rtmpose_x_uses_its_own_augmentation_and_clipping(name):
    config = load_config(name)
    for augmentation in (config.augmentation, config.final_augmentation):
        assert augmentation.scale_range == (0.5, 1.5) and augmentation.rotate_factor == 90.0
    assert config.augmentation.shift_factor == 0.16 and config.augmentation.dropout_probability == 1.0
    assert (
        config.final_augmentation.shift_factor == 0.0 and config.final_augmentation.dropout_probability == 0.5
    )
    assert config.optim.clip_grad_norm == 35.0


def test_other_sizes_keep_the_spec_augmentation_and_no_clipping():
    config = load_config("rtmpose_l_256x192")
    assert config.augmentation == AugmentationConfig()
    assert (
        config.final_augmentation.scale_range == (0.75, 1.25)
        and config.final_augmentation.rotate_factor == 60
    )
    assert config.optim.clip_grad_norm is None


@pytest.mark.parametrize("name", ["rtmpose_t_256x192", "rtmpose_l_384x288", "rtmpose_x_384x288"])
def test_lr_is_not_rescaled_to_the_batch(name):
    optim = load_config(name).optim
    assert optim.lr == 4e-3 and optim.scale_lr is False


@pytest.mark.parametrize(
    "name",
    ["self_distill_t_256x192", "self_distill_s_256x192", "self_distill_m_256x192", "self_distill_l_256x192",
     "self_distill_l_384x288"],
)  # fmt: skip
def test_stage2_keeps_a_flat_lr_and_the_strong_pipeline_for_its_60_epochs(name):
    config = load_distill_config(name, 2).train
    per_epoch, lr = 100, 4e-3
    assert config.schedule.max_epochs == 60
    assert learning_rate(500, per_epoch, lr, config) < lr  # the 1000-iteration warm-up is kept
    for iteration in (1000, 30 * per_epoch, 60 * per_epoch - 1):
        assert learning_rate(iteration, per_epoch, lr, config) == lr
    assert config.final_stage_epoch == 60  # epochs 0..59 all use the first-stage pipeline


def test_half_body_lower_body_includes_the_feet():
    assert COCO_WHOLEBODY.lower_body_ids == tuple(range(11, 23))
    assert COCO_BODY.lower_body_ids == tuple(range(11, 17))
    keypoints = np.zeros((133, 2), np.float32)
    visibility = np.zeros(133, np.float32)
    keypoints[[13, 15]] = [[10, 50], [12, 80]]  # two leg points: fewer than 3 without the feet
    keypoints[17:23] = [[5, 95], [20, 95], [14, 90], [0, 99], [30, 99], [9, 90]]
    visibility[[13, 15, *range(17, 23)]] = 2
    state = CropState(np.zeros((4, 4, 3), np.uint8), np.zeros(2), np.ones(2), 0.0, keypoints, visibility)
    found = half_body_box(
        state, np.random.default_rng(0), COCO_WHOLEBODY.upper_body_ids, COCO_WHOLEBODY.lower_body_ids,
        AugmentationConfig(),
    )  # fmt: skip
    assert found is not None
    center, scale = found
    np.testing.assert_allclose(center, [12.5, 87.25])
    np.testing.assert_allclose(scale, [30 * 1.5, 49 * 1.5])
    assert half_body_box(state, np.random.default_rng(0), COCO_BODY.upper_body_ids, COCO_BODY.lower_body_ids,
                         AugmentationConfig()) is None  # fmt: skip


def test_ubody_frames_are_sampled_one_in_ten_by_image_id():
    ubody = load_config("rtmpose_m_256x192").data.train[1]
    assert ubody.kind == "ubody" and ubody.sample_interval == 10
