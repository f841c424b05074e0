"""Does a model localise? Held-out body AP and keypoint error against a fixed mean-pose guess.

A model stuck on the SimCC plateau predicts (nearly) the same pose in every box: its AP is about
0 and its keypoint error equals that of the fixed guess "every keypoint at its mean position in
the box". :func:`localisation_report` measures both on a held-out set with ground-truth boxes;
the error is the median distance between predicted and labelled keypoints divided by the box
diagonal (body: the 17 COCO points; whole body: every labelled point).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from training.data.instances import PersonInstance

BODY = slice(0, 17)
MIN_BODY_AP = 0.1
MAX_ERROR_RATIO = 0.5


def normalised_errors(
    predicted: Sequence[np.ndarray], instances: Sequence[PersonInstance], part: slice
) -> np.ndarray:
    """Distance / box diagonal of every labelled keypoint of ``part``."""
    errors = []
    for keypoints, instance in zip(predicted, instances, strict=True):
        labelled = instance.visibility[part] > 0
        diagonal = float(np.hypot(*(instance.box[2:] - instance.box[:2])))
        distance = np.linalg.norm(keypoints[part][labelled] - instance.keypoints[part][labelled], axis=1)
        errors.append(distance / diagonal)
    return np.concatenate(errors)


def mean_pose_guess(instances: Sequence[PersonInstance]) -> list[np.ndarray]:
    """Every keypoint at its mean labelled position in box-normalised coordinates."""
    offsets = np.zeros((len(instances[0].keypoints), 2))
    counts = np.zeros((len(instances[0].keypoints), 1))
    for instance in instances:
        size = instance.box[2:] - instance.box[:2]
        labelled = instance.visibility > 0
        offsets[labelled] += (instance.keypoints[labelled] - instance.box[:2]) / size
        counts[labelled] += 1
    mean = offsets / np.maximum(counts, 1)
    return [instance.box[:2] + mean * (instance.box[2:] - instance.box[:2]) for instance in instances]


def median_errors(predicted: Sequence[np.ndarray], instances: Sequence[PersonInstance]) -> dict[str, float]:
    """``body_error`` (17 body points) and ``wholebody_error`` (all points): median normalised errors."""
    parts = {"body_error": BODY, "wholebody_error": slice(None)}
    return {
        name: float(np.median(normalised_errors(predicted, instances, part))) for name, part in parts.items()
    }


@dataclass(frozen=True)
class LocalisationReport:
    """Held-out numbers of one model; ``localises`` is the gate (body AP and error vs the mean pose)."""

    body_ap: float
    body_ap50: float
    median_error: float
    mean_pose_error: float
    wholebody_median_error: float
    min_body_ap: float = MIN_BODY_AP
    max_error_ratio: float = MAX_ERROR_RATIO

    @property
    def median_error_over_mean_pose(self) -> float:
        return self.median_error / self.mean_pose_error

    @property
    def localises(self) -> bool:
        """Body AP at least ``min_body_ap`` and body error at most ``max_error_ratio`` of the guess's."""
        return self.body_ap >= self.min_body_ap and self.median_error_over_mean_pose <= self.max_error_ratio

    def to_dict(self) -> dict[str, float | bool]:
        return {
            **asdict(self),
            "median_error_over_mean_pose": self.median_error_over_mean_pose,
            "localises": self.localises,
        }

    def describe(self) -> str:
        verdict = "localises" if self.localises else "does NOT localise"
        return (
            f"the model {verdict}: held-out body AP {self.body_ap:.3f} (AP50 {self.body_ap50:.3f}; gate >= "
            f"{self.min_body_ap}), median body error {self.median_error:.4f} of the box diagonal = "
            f"{self.median_error_over_mean_pose:.2f} x the fixed mean pose's {self.mean_pose_error:.4f} "
            f"(gate <= {self.max_error_ratio})"
        )


def localisation_report(
    model: nn.Module,
    config,
    instances: Sequence[PersonInstance] | None = None,
    device: str = "cpu",
    min_body_ap: float = MIN_BODY_AP,
    max_error_ratio: float = MAX_ERROR_RATIO,
) -> LocalisationReport:
    """Score ``model`` on ``config.data.val`` (a :class:`training.config.TrainConfig`) with
    ground-truth boxes, no flip test: body AP / AP50 via xtcocotools and the median errors."""
    from training.engine import ground_truth_file, load_instances
    from training.evaluate import evaluate_results, predictions_to_results
    from training.inference import predict_topdown

    metadata = config.model.metadata
    if instances is None:
        instances = load_instances(config.data.val, config.data.data_root, metadata)
    predictions = predict_topdown(
        model, instances, metadata, tuple(config.model.input_size), batch_size=config.data.val_batch_size,
        device=device,
    )  # fmt: skip
    results = predictions_to_results(predictions, metadata)
    body = evaluate_results(
        ground_truth_file(config.data.val, config.data.data_root), results, metadata
    ).parts["body"]
    errors = median_errors([prediction.keypoints for prediction in predictions], instances)
    guess = median_errors(mean_pose_guess(instances), instances)
    return LocalisationReport(
        body_ap=body.ap,
        body_ap50=body.ap50,
        median_error=errors["body_error"],
        mean_pose_error=guess["body_error"],
        wholebody_median_error=errors["wholebody_error"],
        min_body_ap=min_body_ap,
        max_error_ratio=max_error_ratio,
    )
