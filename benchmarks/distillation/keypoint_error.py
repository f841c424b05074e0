"""The distillation study's secondary metric: keypoint error relative to the box diagonal.

    python benchmarks/distillation/keypoint_error.py --work-dir runs/distill_study_v2

Added after protocol version 1 scored AP 0.0 for every arm of seed 0, where AP could not
separate the arms; protocol version 2 names it as its secondary metric. For a finished run it
predicts the held-out set on the ground-truth boxes with the run's final EMA weights
(``last.pth``), exactly as the engine's validation does, and takes the median distance between
predicted and labelled keypoints divided by the box diagonal (body: the 17 COCO points; whole
body: all 133). The same number for a fixed guess (every keypoint at its mean position relative
to the box, taken from the held-out labels themselves) is the bar any pose-independent guess
cannot beat. ``run_study.py`` records it in every run's ``metrics.json``; this script recomputes
it for every finished run of a work dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.config import TrainConfig  # noqa: E402
from training.engine import build_model, load_instances  # noqa: E402
from training.inference import predict_topdown  # noqa: E402
from training.localisation import mean_pose_guess, median_errors  # noqa: E402


def held_out_instances(config: TrainConfig):
    return load_instances(config.data.val, config.data.data_root, config.model.metadata)


def run_keypoint_errors(run_dir: Path, config: TrainConfig) -> dict[str, float]:
    """Median errors of ``run_dir/last.pth`` (a model as ``config.model`` describes) on the held-out set."""
    instances = held_out_instances(config)
    model = build_model(config)
    checkpoint = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    predictions = predict_topdown(model, instances, config.model.metadata, tuple(config.model.input_size))
    return median_errors([prediction.keypoints for prediction in predictions], instances)


def mean_pose_baseline(config: TrainConfig) -> dict[str, float]:
    """The median errors of the fixed mean-pose guess on the held-out set of ``config``."""
    instances = held_out_instances(config)
    return median_errors(mean_pose_guess(instances), instances)


def main(argv: list[str] | None = None) -> int:
    from run_study import STUDENT_ARMS, StudySettings, run_config, teacher_config

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="the study's --work-dir")
    args = parser.parse_args(argv)
    settings = StudySettings()
    found = {}
    teacher_dir = args.work_dir / "runs" / "teacher"
    if (teacher_dir / "last.pth").exists():
        found["teacher"] = run_keypoint_errors(teacher_dir, teacher_config(settings, args.work_dir))
    student = run_config(settings, args.work_dir, "student", settings.student_size, 1, 0)
    for seed_dir in sorted((args.work_dir / "runs").glob("seed*")):
        for arm in STUDENT_ARMS:
            if (seed_dir / arm / "last.pth").exists():
                found[f"{seed_dir.name}/{arm}"] = run_keypoint_errors(seed_dir / arm, student)
    if not found:
        parser.error(f"no finished runs under {args.work_dir / 'runs'}")
    found["mean_pose"] = mean_pose_baseline(student)
    text = json.dumps(found, indent=2)
    (args.work_dir / "keypoint_error.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
