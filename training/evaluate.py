"""COCO-WholeBody evaluation (SPEC section 11) through xtcocotools, the reference evaluator.

Two entry points:

- :func:`evaluate_results` scores a COCO-WholeBody results list (the official format: per person
  ``image_id``, ``category_id``, ``keypoints``, ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``,
  ``righthand_kpts``, ``score``) against a ground-truth file: six OKS evaluations with per-part
  sigmas, hand AP = mean of the two hands.
- :func:`predictions_to_results` turns top-down predictions into that list the way mmpose does
  (score = box score x mean of keypoint scores above 0.2, OKS-NMS 0.9 per image).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dwpose_ctrl.keypoints import COCO_WHOLEBODY, KeypointMetadata

# Annotation field of each COCO-WholeBody part, in the order the 133 points concatenate them.
PART_FIELDS: dict[str, str] = {
    "body": "keypoints",
    "foot": "foot_kpts",
    "face": "face_kpts",
    "lefthand": "lefthand_kpts",
    "righthand": "righthand_kpts",
}
_IOU_TYPES = {
    "body": "keypoints",
    "foot": "keypoints_foot",
    "face": "keypoints_face",
    "lefthand": "keypoints_lefthand",
    "righthand": "keypoints_righthand",
    "wholebody": "keypoints_wholebody",
}
KEYPOINT_SCORE_THRESHOLD = 0.2
OKS_NMS_THRESHOLD = 0.9


@dataclass(frozen=True)
class PartMetrics:
    """The ten COCO keypoint statistics of one part."""

    ap: float
    ap50: float
    ap75: float
    ap_medium: float
    ap_large: float
    ar: float
    ar50: float
    ar75: float
    ar_medium: float
    ar_large: float


@dataclass(frozen=True)
class WholeBodyMetrics:
    """Per-part metrics; ``hand_ap`` / ``hand_ar`` are the means of the left and right hand."""

    parts: dict[str, PartMetrics]

    @property
    def hand_ap(self) -> float:
        return (self.parts["lefthand"].ap + self.parts["righthand"].ap) / 2

    @property
    def hand_ar(self) -> float:
        return (self.parts["lefthand"].ar + self.parts["righthand"].ar) / 2

    def summary(self) -> dict[str, float]:
        """``{part}_ap`` and ``{part}_ar`` for every part plus ``hand_ap`` / ``hand_ar``."""
        summary: dict[str, float] = {}
        both_hands = "lefthand" in self.parts and "righthand" in self.parts
        for statistic in ("ap", "ar"):
            for name, metrics in self.parts.items():
                summary[f"{name}_{statistic}"] = getattr(metrics, statistic)
                if name == "righthand" and both_hands:
                    summary[f"hand_{statistic}"] = getattr(self, f"hand_{statistic}")
        return summary

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "parts": {name: asdict(m) for name, m in self.parts.items()}}

    def format_table(self) -> str:
        """A plain-text table: one row per part, AP / AP50 / AP75 / AR."""
        lines = [f"{'part':<10} {'AP':>7} {'AP50':>7} {'AP75':>7} {'AR':>7}"]
        for name, m in self.parts.items():
            lines.append(f"{name:<10} {m.ap:7.4f} {m.ap50:7.4f} {m.ap75:7.4f} {m.ar:7.4f}")
        if "lefthand" in self.parts and "righthand" in self.parts:
            lines.append(f"{'hand':<10} {self.hand_ap:7.4f} {'':>7} {'':>7} {self.hand_ar:7.4f}")
        return "\n".join(lines)


def _load_json(source: str | os.PathLike | dict | list) -> dict | list:
    if isinstance(source, (dict, list)):
        return copy.deepcopy(source)
    if isinstance(source, (str, os.PathLike)):
        from training.data.instances import read_json_file

        return read_json_file(source)
    raise TypeError(f"expected a JSON file path or its loaded content, got {type(source).__name__}")


def _coco_from_dict(dataset: dict):
    from xtcocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    coco.anno_file = ["in-memory"]
    return coco


def _check_results(results: list, parts: list[str], gt_image_ids: set) -> None:
    if not isinstance(results, list):
        raise TypeError(f"results must be a list of per-person dicts, got {type(results).__name__}")
    if not results:
        raise ValueError("results are empty: give at least one predicted person")
    required = {"image_id", "score", *(PART_FIELDS[p] for p in parts if p in PART_FIELDS)}
    for index, result in enumerate(results):
        missing = required - set(result)
        if missing:
            raise ValueError(
                f"result {index} lacks {sorted(missing)}; COCO-WholeBody results need "
                "image_id, category_id, keypoints, foot_kpts, face_kpts, lefthand_kpts, righthand_kpts, score"
            )
        if result["image_id"] not in gt_image_ids:
            raise ValueError(
                f"result {index} has image_id {result['image_id']} which is not in the ground truth"
            )


def evaluate_results(
    ground_truth: str | os.PathLike | dict,
    results: str | os.PathLike | list,
    metadata: KeypointMetadata = COCO_WHOLEBODY,
) -> WholeBodyMetrics:
    """Score COCO-WholeBody results against ground truth with xtcocotools (OKS, maxDets 20).

    ``ground_truth`` and ``results`` are file paths or their loaded JSON. Every part of
    ``metadata`` with a COCO-WholeBody field is evaluated with its sigma slice; ``wholebody``
    uses all sigmas. The person's annotated area is used for every part.
    """
    from xtcocotools.cocoeval import COCOeval

    gt = _load_json(ground_truth)
    dt = _load_json(results)
    parts = [p for p in metadata.parts if p in _IOU_TYPES]
    if not parts:
        raise ValueError(
            f"layout {metadata.name!r} has no part the COCO-WholeBody evaluator knows ({_IOU_TYPES})"
        )
    if not isinstance(gt, dict) or "annotations" not in gt:
        raise ValueError("ground truth must be a COCO-style dict with 'images', 'annotations', 'categories'")
    _check_results(dt, parts, {image["id"] for image in gt["images"]})
    for result in dt:
        result.setdefault("category_id", 1)
    sigmas = metadata.sigma_array
    metrics: dict[str, PartMetrics] = {}
    for part in parts:
        coco_gt = _coco_from_dict(copy.deepcopy(gt))
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            coco_dt = coco_gt.loadRes(copy.deepcopy(dt))
            evaluator = COCOeval(
                coco_gt, coco_dt, _IOU_TYPES[part], sigmas[metadata.parts[part]], use_area=True
            )
            evaluator.params.useSegm = None
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics[part] = PartMetrics(*(float(value) for value in evaluator.stats[:10]))
    return WholeBodyMetrics(metrics)


@dataclass(frozen=True)
class TopDownPrediction:
    """One person predicted top-down: keypoints (K, 2) and scores (K,) in image pixels.

    ``area`` is the product of the crop scale (padded, aspect-fixed box), used by OKS-NMS.
    """

    image_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    box_score: float
    area: float


def rescore(prediction: TopDownPrediction, threshold: float = KEYPOINT_SCORE_THRESHOLD) -> float:
    """Box score x mean of the keypoint scores above ``threshold`` (0 kept as box score x 0)."""
    valid = prediction.scores[prediction.scores > threshold]
    keypoint_score = float(valid.mean()) if valid.size else 0.0
    return keypoint_score * prediction.box_score


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, threshold: float
) -> list[int]:
    """Greedy OKS non-maximum suppression; ``keypoints`` (N, K, 2). Returns kept indices by score."""
    variances = (sigmas * 2) ** 2
    order = np.argsort(scores)[::-1]
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        squared = ((keypoints[rest] - keypoints[best]) ** 2).sum(axis=2)
        mean_area = (areas[best] + areas[rest]) / 2 + np.spacing(1)
        oks = np.exp(-squared / variances / mean_area[:, None] / 2).mean(axis=1)
        order = rest[oks <= threshold]
    return keep


def predictions_to_results(
    predictions: list[TopDownPrediction],
    metadata: KeypointMetadata = COCO_WHOLEBODY,
    nms_threshold: float | None = OKS_NMS_THRESHOLD,
) -> list[dict]:
    """COCO-WholeBody results from top-down predictions: rescoring, per-image OKS-NMS, part fields."""
    by_image: dict[int, list[TopDownPrediction]] = defaultdict(list)
    for prediction in predictions:
        by_image[prediction.image_id].append(prediction)
    results: list[dict] = []
    sigmas = metadata.sigma_array
    for image_id in sorted(by_image):
        people = by_image[image_id]
        scores = np.array([rescore(p) for p in people])
        keep = list(range(len(people)))
        if nms_threshold is not None and len(people) > 1:
            keep = oks_nms(
                np.stack([p.keypoints for p in people]),
                scores,
                np.array([p.area for p in people]),
                sigmas,
                nms_threshold,
            )
        for index in keep:
            person = people[index]
            triplets = np.concatenate([person.keypoints, person.scores[:, None]], axis=1)
            result = {"image_id": int(image_id), "category_id": 1, "score": float(scores[index])}
            for part, field in PART_FIELDS.items():
                if part in metadata.parts:
                    result[field] = triplets[metadata.parts[part]].reshape(-1).astype(float).tolist()
            results.append(result)
    return results


def write_results(results: list[dict], path: str | os.PathLike) -> Path:
    """Write a results list as JSON (the format ``python -m training eval --predictions`` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return path
