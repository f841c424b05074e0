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
    keypoint_error = _load("keypoint_error")
    instance = _instance([0, 0, 30, 40], [[0, 0], [10, 10], [5, 5]], [1, 1, 0])  # diagonal 50
    predicted = [np.array([[3.0, 4.0], [10.0, 10.0], [100.0, 100.0]])]
    errors = keypoint_error.normalised_errors(predicted, [instance], slice(None))
    np.testing.assert_allclose(errors, [5 / 50, 0.0])
    np.testing.assert_allclose(keypoint_error.normalised_errors(predicted, [instance], slice(0, 1)), [0.1])


def test_mean_pose_guess_places_each_keypoint_at_its_mean_box_position():
    keypoint_error = _load("keypoint_error")
    first = _instance([0, 0, 10, 10], [[2, 4], [0, 0]], [1, 0])
    second = _instance([10, 20, 30, 60], [[18, 36], [20, 40]], [1, 1])  # relative (0.4, 0.4), (0.5, 0.5)
    guesses = keypoint_error.mean_pose_guess([first, second])
    np.testing.assert_allclose(guesses[0], [[3.0, 4.0], [5.0, 5.0]])
    np.testing.assert_allclose(guesses[1], [[16.0, 36.0], [20.0, 40.0]])


def test_study_summary_reports_mean_and_sample_std_per_arm():
    run_study = _load("run_study")
    per_seed = {
        seed: {
            arm: {"wholebody_ap": value, "body_ap": 2 * value, "seconds": 1.0}
            for arm, value in zip(run_study.ARMS, (0.1 * seed, 0.2, 0.3 + seed, 0.0), strict=True)
        }
        for seed in (0, 1, 2)
    }
    summary = run_study.summarise(per_seed)
    assert summary["teacher"]["wholebody_ap"]["mean"] == pytest.approx(0.1)
    assert summary["teacher"]["wholebody_ap"]["std"] == pytest.approx(0.1)  # ddof 1
    assert summary["stage1"]["body_ap"]["per_seed"] == [0.6, 2.6, 4.6]
    assert summary["student_alone"]["wholebody_ap"]["std"] == 0.0
    table = run_study.markdown_table(summary).splitlines()
    expected = "| teacher | 0.1000 +- 0.1000 | 0.0000, 0.1000, 0.2000 | 0.2000 +- 0.2000 | "
    assert table[2] == expected + "0.0000, 0.2000, 0.4000 |"
