"""The distillation study's summary and its keypoint-error diagnostic, on hand-made numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "distillation"


def _load(name: str):
    if str(STUDY) not in sys.path:
        sys.path.insert(0, str(STUDY))
    spec = importlib.util.spec_from_file_location(name, STUDY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _instance(box, keypoints, visibility):
    from training.data.instances import PersonInstance

    return PersonInstance(
        image_path="unused.jpg",
        image_id=1,
        annotation_id=1,
        box=np.asarray(box, np.float32),
        keypoints=np.asarray(keypoints, np.float32),
        visibility=np.asarray(visibility, np.float32),
        area=1.0,
        iscrowd=False,
        num_body_keypoints=int(np.sum(visibility)),
    )


def test_normalised_errors_divide_labelled_distances_by_the_box_diagonal():
    from training import localisation as keypoint_error

    instance = _instance([0, 0, 30, 40], [[0, 0], [10, 10], [5, 5]], [1, 1, 0])  # diagonal 50
    predicted = [np.array([[3.0, 4.0], [10.0, 10.0], [100.0, 100.0]])]
    errors = keypoint_error.normalised_errors(predicted, [instance], slice(None))
    np.testing.assert_allclose(errors, [5 / 50, 0.0])
    np.testing.assert_allclose(keypoint_error.normalised_errors(predicted, [instance], slice(0, 1)), [0.1])


def test_mean_pose_guess_places_each_keypoint_at_its_mean_box_position():
    from training import localisation as keypoint_error

    first = _instance([0, 0, 10, 10], [[2, 4], [0, 0]], [1, 0])
    second = _instance([10, 20, 30, 60], [[18, 36], [20, 40]], [1, 1])  # relative (0.4, 0.4), (0.5, 0.5)
    guesses = keypoint_error.mean_pose_guess([first, second])
    np.testing.assert_allclose(guesses[0], [[3.0, 4.0], [5.0, 5.0]])
    np.testing.assert_allclose(guesses[1], [[16.0, 36.0], [20.0, 40.0]])


def _metrics(value: float) -> dict[str, float]:
    return {
        "wholebody_ap": value,
        "body_ap": 2 * value,
        "wholebody_error": 1 - value,
        "body_error": 0.5,
        "seconds": 1.0,
    }


def test_study_summary_reports_mean_and_sample_std_per_arm():
    run_study = _load("run_study")
    runs = {"teacher": [_metrics(0.7)]}
    for arm, values in zip(
        run_study.STUDENT_ARMS, ((0.1, 0.2, 0.3), (0.2, 0.2, 0.2), (0.3, 1.3, 2.3)), strict=True
    ):
        runs[arm] = [_metrics(value) for value in values]
    summary = run_study.summarise(runs)
    assert summary["student_alone"]["wholebody_ap"]["mean"] == pytest.approx(0.2)
    assert summary["student_alone"]["wholebody_ap"]["std"] == pytest.approx(0.1)  # ddof 1
    assert summary["stage1_2"]["body_ap"]["per_seed"] == [0.6, 2.6, 4.6]
    assert summary["stage1"]["wholebody_error"]["std"] == 0.0
    assert np.isnan(summary["teacher"]["body_ap"]["std"])
    table = run_study.markdown_table(summary).splitlines()
    assert table[2] == (
        "| teacher | 0.7000 (one run) | 0.7000 | 1.4000 (one run) | 1.4000 | 0.3000 (one run) | 0.3000 "
        "| 0.5000 (one run) | 0.5000 |"
    )
    assert table[3] == (
        "| student_alone | 0.2000 +- 0.1000 | 0.1000, 0.2000, 0.3000 | 0.4000 +- 0.2000 "
        "| 0.2000, 0.4000, 0.6000 | 0.8000 +- 0.1000 | 0.9000, 0.8000, 0.7000 | 0.5000 +- 0.0000 "
        "| 0.5000, 0.5000, 0.5000 |"
    )
    assert len(table) == 6


def test_study_summary_leaves_out_arms_without_runs():
    run_study = _load("run_study")
    summary = run_study.summarise({"teacher": [_metrics(0.5)], "student_alone": []})
    assert list(summary) == ["teacher"]


def test_study_settings_refuse_an_unknown_augmentation():
    run_study = _load("run_study")
    with pytest.raises(ValueError, match="augmentation must be one of"):
        run_study.StudySettings(augmentation="heavy")


def test_study_arms_share_data_optimiser_and_augmentation(tmp_path):
    from training.data.transforms import AugmentationConfig

    run_study = _load("run_study")
    settings = run_study.StudySettings()
    teacher = run_study.teacher_config(settings, tmp_path)
    student = run_study.run_config(settings, tmp_path, "student", "t", settings.student_epochs, 1)
    assert (teacher.model.size, student.model.size) == ("s", "t")
    assert teacher.schedule.max_epochs == 2 * student.schedule.max_epochs
    assert teacher.seed == settings.teacher_seed and student.seed == 1
    for config in (teacher, student):
        assert config.augmentation == AugmentationConfig().final_stage()
        assert config.final_stage_epochs == 0
        assert (config.data.batch_size, config.optim.lr, config.optim.clip_grad_norm) == (16, 2e-3, 1.0)
    recipe = run_study.run_config(
        run_study.StudySettings(augmentation="recipe"), tmp_path, "student", "t", 27, 0
    )
    assert recipe.augmentation == AugmentationConfig() and recipe.final_stage_epochs == 3
