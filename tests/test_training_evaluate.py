"""COCO-WholeBody evaluation equals xtcocotools on the SPEC 12 cases and on perturbed predictions."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings

import numpy as np
import pytest

from dwpose_ctrl.keypoints import COCO_WHOLEBODY
from training.__main__ import main
from training.evaluate import (
    PART_FIELDS,
    TopDownPrediction,
    evaluate_results,
    oks_nms,
    predictions_to_results,
    rescore,
)

FIELDS = list(PART_FIELDS.values())


@pytest.fixture(scope="module")
def ground_truth(val5_dir):
    return json.loads((val5_dir / "annotations.json").read_text())


def _gt_as_results(ground_truth, confidence_one: bool = False) -> list[dict]:
    results = []
    for annotation in ground_truth["annotations"]:
        result = {"image_id": annotation["image_id"], "category_id": 1, "score": 1.0}
        for field in FIELDS:
            values = list(annotation[field])
            if confidence_one:
                values[2::3] = [1.0] * (len(values) // 3)
            result[field] = values
        results.append(result)
    return results


def _xtcocotools_reference(ground_truth, results) -> dict[str, float]:
    """Straight xtcocotools calls, as mmpose's CocoWholeBodyMetric makes them."""
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    sigmas = np.array(COCO_WHOLEBODY.sigmas)
    cuts = np.cumsum([0, 17, 6, 68, 21, 21])
    types = [
        "keypoints_body",
        "keypoints_foot",
        "keypoints_face",
        "keypoints_lefthand",
        "keypoints_righthand",
    ]
    names = ["body", "foot", "face", "lefthand", "righthand"]
    out = {}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, (name, iou_type) in enumerate(
            [*zip(names, types, strict=True), ("wholebody", "keypoints_wholebody")]
        ):
            gt = COCO()
            gt.dataset = copy.deepcopy(ground_truth)
            gt.createIndex()
            gt.anno_file = ["x"]
            dt = gt.loadRes(copy.deepcopy(results))
            part_sigmas = sigmas if name == "wholebody" else sigmas[cuts[index] : cuts[index + 1]]
            evaluator = COCOeval(gt, dt, iou_type, part_sigmas, use_area=True)
            evaluator.params.useSegm = None
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            out[f"{name}_ap"], out[f"{name}_ar"] = evaluator.stats[0], evaluator.stats[5]
    return out


def test_ground_truth_as_predictions_gives_one_everywhere(ground_truth):
    summary = evaluate_results(ground_truth, _gt_as_results(ground_truth)).summary()
    parts = ("body", "foot", "face", "lefthand", "righthand", "hand", "wholebody")
    assert set(summary) == {f"{part}_{statistic}" for part in parts for statistic in ("ap", "ar")}
    assert all(value == pytest.approx(1.0) for value in summary.values())


def test_all_confidences_one_gives_the_spec_numbers(ground_truth):
    metrics = evaluate_results(ground_truth, _gt_as_results(ground_truth, confidence_one=True))
    summary = metrics.summary()
    expected = {"body_ap": 0.9728, "foot_ap": 0.6887, "face_ap": 0.8606, "lefthand_ap": 0.7045,
                "righthand_ap": 0.7508, "wholebody_ap": 0.9728}  # fmt: skip
    for key, value in expected.items():
        assert round(summary[key], 4) == value, key
    assert summary["hand_ap"] == pytest.approx((summary["lefthand_ap"] + summary["righthand_ap"]) / 2)
    reference = _xtcocotools_reference(ground_truth, _gt_as_results(ground_truth, confidence_one=True))
    for key, value in reference.items():
        assert summary[key] == value


def _perturbed(ground_truth, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    results = []
    for annotation in ground_truth["annotations"]:
        if rng.random() < 0.15:
            continue
        scale = np.sqrt(annotation["area"]) * rng.uniform(0.01, 0.12)
        result = {"image_id": annotation["image_id"], "category_id": 1, "score": float(rng.uniform(0.1, 1))}
        for field in FIELDS:
            values = np.array(annotation[field], dtype=float).reshape(-1, 3)
            values[:, :2] += rng.normal(0, scale, (len(values), 2))
            values[:, 2] = rng.uniform(0, 1, len(values))
            result[field] = values.reshape(-1).tolist()
        results.append(result)
    return results


@pytest.mark.parametrize("seed", [0, 1])
def test_perturbed_predictions_equal_xtcocotools(ground_truth, seed):
    results = _perturbed(ground_truth, seed)
    summary = evaluate_results(ground_truth, results).summary()
    reference = _xtcocotools_reference(ground_truth, results)
    for key, value in reference.items():
        assert summary[key] == value, key
    assert 0.05 < summary["body_ap"] < 0.99


def test_eval_command_json(ground_truth, val5_dir, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_gt_as_results(ground_truth, confidence_one=True)))
    assert (
        main(["eval", "--gt", str(val5_dir / "annotations.json"), "--predictions", str(path), "--json"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert list(printed)[:7] == [
        "body_ap",
        "foot_ap",
        "face_ap",
        "lefthand_ap",
        "righthand_ap",
        "hand_ap",
        "wholebody_ap",
    ]
    assert round(printed["face_ap"], 4) == 0.8606 and printed["wholebody_ar"] == pytest.approx(1.0)
    assert main(["eval", "--gt", str(val5_dir / "annotations.json"), "--predictions", str(path)]) == 0
    assert "wholebody" in capsys.readouterr().out


def test_bad_results_are_refused(ground_truth):
    with pytest.raises(ValueError, match="lacks"):
        evaluate_results(ground_truth, [{"image_id": 785, "score": 1.0, "keypoints": [0] * 51}])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_results(ground_truth, [dict(_gt_as_results(ground_truth)[0], image_id=1)])


def test_rescoring_and_oks_nms():
    scores = np.array([0.1, 0.5, 0.9, 0.3])
    person = TopDownPrediction(7, np.zeros((4, 2)), scores, box_score=0.8, area=100.0)
    assert rescore(person) == pytest.approx(0.8 * (0.5 + 0.9 + 0.3) / 3)
    assert rescore(TopDownPrediction(7, np.zeros((4, 2)), np.full(4, 0.1), 0.8, 100.0)) == 0.0
    keypoints = np.array([[[0, 0], [10, 10]], [[0.1, 0], [10, 10.1]], [[50, 50], [60, 60]]], dtype=float)
    keep = oks_nms(
        keypoints, np.array([0.5, 0.9, 0.7]), np.array([400.0, 400.0, 400.0]), np.array([0.1, 0.1]), 0.9
    )
    assert keep == [1, 2]


def test_predictions_to_results_fields_and_nms():
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(0, 100, (133, 2))
    a = TopDownPrediction(5, keypoints, np.full(133, 0.9), 1.0, 5000.0)
    b = TopDownPrediction(5, keypoints + 0.01, np.full(133, 0.5), 1.0, 5000.0)
    c = TopDownPrediction(6, keypoints, np.full(133, 0.4), 0.5, 5000.0)
    results = predictions_to_results([a, b, c])
    assert [r["image_id"] for r in results] == [5, 6]
    assert results[0]["score"] == pytest.approx(0.9) and results[1]["score"] == pytest.approx(0.2)
    assert len(results[0]["face_kpts"]) == 204 and results[0]["lefthand_kpts"][:3] == pytest.approx(
        [*keypoints[91], 0.9]
    )
    assert len(predictions_to_results([a, b], nms_threshold=None)) == 2
