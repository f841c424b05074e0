"""The distillation study (protocol v3): its configs, preconditions, step graph and summary, on
hand-made numbers; and the keypoint-error diagnostic it reports."""

from __future__ import annotations

import importlib.util
import json
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
        "body_ap": value,
        "body_ap50": 2 * value,
        "median_error": 1 - value,
        "wholebody_median_error": 0.5,
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
    assert summary["student_alone"]["body_ap"]["mean"] == pytest.approx(0.2)
    assert summary["student_alone"]["body_ap"]["std"] == pytest.approx(0.1)  # ddof 1
    assert summary["stage1_2"]["body_ap50"]["per_seed"] == [0.6, 2.6, 4.6]
    assert summary["stage1"]["median_error"]["std"] == 0.0
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


def test_comparison_follows_the_protocols_rule():
    run_study = _load("run_study")
    summary = run_study.summarise(
        {
            "student_alone": [_metrics(v) for v in (0.10, 0.12, 0.14)],  # std 0.02
            "stage1": [_metrics(v) for v in (0.15, 0.16, 0.17)],  # +0.04, std 0.01
            "stage1_2": [_metrics(v) for v in (0.14, 0.15, 0.19)],  # +0.0, std 0.026
        }
    )
    assert run_study.compare(summary, "stage1", "student_alone") == "higher by 0.0400 (larger std 0.0200)"
    assert run_study.compare(summary, "stage1_2", "stage1").startswith("not distinguishable (+0.0000")
    assert run_study.compare(summary, "stage1", "teacher") == "not run"


def test_preconditions_need_a_localising_teacher_and_a_gap_beyond_the_seed_spread():
    run_study = _load("run_study")
    settings = run_study.StudySettings()
    teacher = {"body_ap": 0.30, "body_ap50": 0.8, "median_error_over_mean_pose": 0.3}
    alone = [{"body_ap": value} for value in (0.20, 0.22, 0.24)]  # mean 0.22, std 0.02
    check = run_study.preconditions(settings, teacher, alone)
    assert check["hold"] and check["teacher_localises"]
    assert check["gap"] == pytest.approx(0.08) and check["student_alone_std"] == pytest.approx(0.02)
    assert not run_study.preconditions(settings, {**teacher, "body_ap": 0.23}, alone)["hold"]
    assert not run_study.preconditions(settings, {**teacher, "body_ap50": 0.49}, alone)["hold"]
    assert not run_study.preconditions(settings, {**teacher, "median_error_over_mean_pose": 0.51}, alone)[
        "hold"
    ]


def test_study_settings_refuse_an_unknown_part():
    run_study = _load("run_study")
    with pytest.raises(ValueError, match="parts must be among"):
        run_study.StudySettings(parts=("A", "C"))


def test_study_runs_share_data_optimiser_and_augmentation(tmp_path):
    from training.data.transforms import AugmentationConfig

    run_study = _load("run_study")
    settings = run_study.StudySettings()
    teacher = run_study.teacher_config(settings, tmp_path, "A", settings.teacher_iterations)
    student = run_study.student_config(settings, tmp_path, "B", "student_alone", 1)
    stage2 = run_study.student_config(settings, tmp_path, "A", "stage1_2", 2)
    assert (teacher.model.size, student.model.size) == ("s", "t")
    assert (teacher.model.keypoints, student.model.keypoints) == ("coco_body", "coco_wholebody")
    # 64 iterations per epoch; iterations are rounded up to whole epochs
    assert [c.schedule.max_epochs for c in (teacher, student, stage2)] == [25, 13, 3]
    assert [c.schedule.cosine_begin_epoch for c in (teacher, student, stage2)] == [12, 6, 1]
    assert (teacher.seed, student.seed, stage2.seed) == (0, 1, 2)
    for config in (teacher, student, stage2):
        assert config.augmentation == config.final_augmentation == AugmentationConfig().final_stage()
        assert config.final_stage_epochs == 0 and config.model.init_checkpoint is None
        assert (config.data.batch_size, config.optim.lr, config.optim.clip_grad_norm) == (16, 2e-3, 1.0)
        assert not config.optim.scale_lr and config.schedule.warmup_iters == 100
        assert run_study.without_validation(config).data.val is None and config.data.val is not None


def test_step_graph_runs_in_order_skips_what_cannot_run_and_reuses_stored_results(tmp_path):
    run_study = _load("run_study")
    Step = run_study.Step

    def steps(first_result: dict) -> list:
        return [
            Step("gate", (), tmp_path / "gate.json", lambda results: (dict, (first_result,))),
            Step(
                "after", ("gate",), tmp_path / "after.json",
                lambda results: (dict, ({"saw": results["gate"]["value"]},)),
                lambda results: None if results["gate"]["ok"] else "the gate failed",
            ),
            Step("later", ("after",), tmp_path / "later.json", lambda results: (dict, ({"n": 1},))),
        ]  # fmt: skip

    seen = []
    failed = run_study.run_graph(steps({"ok": False, "value": 1}), 1, 1, lambda r, s: seen.append(dict(r)))
    assert failed["results"] == {"gate": {"ok": False, "value": 1}}
    assert failed["skipped"] == {"after": "the gate failed", "later": "needs after, which did not run"}
    assert len(seen) == 1 and not (tmp_path / "after.json").exists()

    (tmp_path / "gate.json").write_text('{"ok": true, "value": 7}')  # stored results are not run again
    passed = run_study.run_graph(steps({"ok": False, "value": 2}), 2, 1, lambda r, s: None)
    assert passed["results"] == {"gate": {"ok": True, "value": 7}, "after": {"saw": 7}, "later": {"n": 1}}
    assert passed["skipped"] == {}
    assert json.loads((tmp_path / "later.json").read_text()) == {"n": 1}


def test_stage2_probe_puts_only_the_teachers_batchnorm_in_train_mode():
    from torch import nn

    from dwpose_ctrl.models import build_rtmpose
    from training.distill import Stage2SelfDistiller

    probes = _load("stage2_probes")
    teacher = build_rtmpose("t", (128, 96), 17)
    distiller = Stage2SelfDistiller(teacher, build_rtmpose("t", (128, 96), 17).head)
    probes.train_with_teacher_batchnorm(distiller, True)
    norms = [m for m in distiller.teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.training for m in norms)
    assert not distiller.teacher.training and not distiller.teacher.head.training
    assert distiller.student.head.training
    assert not any(p.requires_grad for p in distiller.teacher.parameters())
    probes.train_with_teacher_batchnorm(distiller, False)
    assert not any(m.training for m in distiller.modules())
