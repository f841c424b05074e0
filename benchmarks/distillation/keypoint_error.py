"""Post-hoc diagnostic for the distillation study: keypoint error where AP cannot separate the arms.

    python benchmarks/distillation/keypoint_error.py --work-dir runs/distill_study

Not one of PROTOCOL.md's metrics: it was added after every arm of seed 0 scored AP 0.0, to say
what the models did learn. For each finished run (``metrics.json`` present) it predicts the
held-out set on the ground-truth boxes with the run's final EMA weights (``last.pth``), exactly
as the engine's validation does, and reports the median distance between predicted and labelled
keypoints divided by the box diagonal (body: the 17 COCO points; whole body: all 133), next to
the same number for a fixed guess (every keypoint at its mean position relative to the box,
taken from the held-out labels themselves, so a lower bound for any pose-independent guess).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from run_study import ARMS, StudySettings, run_config  # noqa: E402

from training.engine import build_model, load_instances  # noqa: E402
from training.inference import predict_topdown  # noqa: E402

BODY = slice(0, 17)


def normalised_errors(predicted: list[np.ndarray], instances, part: slice) -> np.ndarray:
    """Distance / box diagonal of every labelled keypoint of ``part``."""
    errors = []
    for keypoints, instance in zip(predicted, instances, strict=True):
        labelled = instance.visibility[part] > 0
        diagonal = float(np.hypot(*(instance.box[2:] - instance.box[:2])))
        distance = np.linalg.norm(keypoints[part][labelled] - instance.keypoints[part][labelled], axis=1)
        errors.append(distance / diagonal)
    return np.concatenate(errors)


def mean_pose_guess(instances) -> list[np.ndarray]:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="the study's --work-dir")
    args = parser.parse_args(argv)
    settings = StudySettings()
    rows: dict[str, dict[str, list[float]]] = {arm: {"body": [], "wholebody": []} for arm in ARMS}
    instances = None
    for seed_dir in sorted((args.work_dir / "runs").glob("seed*")):
        for arm in ARMS:
            run_dir = seed_dir / arm
            if not (run_dir / "metrics.json").exists():
                continue
            size = settings.teacher_size if arm == "teacher" else settings.student_size
            config = run_config(settings, args.work_dir, arm, size, 1, 0)
            if instances is None:
                instances = load_instances(config.data.val, config.data.data_root, config.model.metadata)
            model = build_model(config)
            checkpoint = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
            model.load_state_dict(checkpoint["state_dict"])
            predictions = predict_topdown(model, instances, config.model.metadata, settings.input_size)
            keypoints = [prediction.keypoints for prediction in predictions]
            rows[arm]["body"].append(float(np.median(normalised_errors(keypoints, instances, BODY))))
            rows[arm]["wholebody"].append(
                float(np.median(normalised_errors(keypoints, instances, slice(None))))
            )
    if instances is None:
        parser.error(f"no finished runs under {args.work_dir / 'runs'}")
    guess = mean_pose_guess(instances)
    baseline = {
        "body": float(np.median(normalised_errors(guess, instances, BODY))),
        "wholebody": float(np.median(normalised_errors(guess, instances, slice(None)))),
    }
    lines = [
        "| arm | seeds | body: median error / box diagonal (mean +- std) | whole body (mean +- std) |",
        "|---|---|---|---|",
    ]
    for arm, values in rows.items():
        if not values["body"]:
            continue
        cells = []
        for part in ("body", "wholebody"):
            spread = statistics.stdev(values[part]) if len(values[part]) > 1 else float("nan")
            per_seed = ", ".join(f"{v:.4f}" for v in values[part])
            cells.append(f"{statistics.fmean(values[part]):.4f} +- {spread:.4f} ({per_seed})")
        lines.append(f"| {arm} | {len(values['body'])} | {cells[0]} | {cells[1]} |")
    lines.append(
        f"| fixed mean pose in the box (from the held-out labels) | - | {baseline['body']:.4f} | "
        f"{baseline['wholebody']:.4f} |"
    )
    table = "\n".join(lines) + "\n"
    (args.work_dir / "keypoint_error.md").write_text(table)
    (args.work_dir / "keypoint_error.json").write_text(
        json.dumps({"arms": rows, "mean_pose": baseline}, indent=2)
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
