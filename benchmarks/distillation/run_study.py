"""The distillation study of PROTOCOL.md (version 2): one teacher, then per seed the student alone,
stage 1 and stage 1 + 2.

    nice -n 19 python benchmarks/distillation/run_study.py --work-dir runs/distill_study_v2

Every run goes through the training engine (``training.engine.train``) and the distillation
stages (``training.distill.run_stage``); the held-out AP is the engine's final validation
(xtcocotools, ground-truth boxes, no flip test), and the secondary metric, the median keypoint
error over the box diagonal, is measured on the same predictions' final EMA weights
(``keypoint_error.py``). Runs whose ``metrics.json`` exists are skipped, so an interrupted study
resumes where it stopped. The defaults are the protocol's; the scale options exist for smoke
checks of this script and their results are not the study's.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.config import (  # noqa: E402
    DataConfig,
    DatasetConfig,
    EmaConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from training.data.synthetic import SyntheticConfig, generate_synthetic_dataset  # noqa: E402
from training.data.transforms import AugmentationConfig  # noqa: E402
from training.distill import Stage1Config, Stage2Config, TeacherConfig, run_stage  # noqa: E402
from training.engine import train  # noqa: E402

STUDY_DIR = Path(__file__).resolve().parent
if str(STUDY_DIR) not in sys.path:
    sys.path.insert(0, str(STUDY_DIR))

from keypoint_error import mean_pose_baseline, run_keypoint_errors  # noqa: E402

ARMS = ("teacher", "student_alone", "stage1", "stage1_2")
STUDENT_ARMS = ARMS[1:]
METRICS = ("wholebody_ap", "body_ap", "wholebody_error", "body_error")
AUGMENTATIONS = ("recipe", "final_stage")
FINAL_STAGE_FRACTION = 30 / 270  # the recipe's last-30-of-270 augmentation switch, kept in proportion


@dataclass(frozen=True)
class StudySettings:
    """The protocol's numbers (PROTOCOL.md, version 2); change them only for smoke checks."""

    seeds: tuple[int, ...] = (0, 1, 2)
    teacher_seed: int = 0
    train_images: int = 1024
    eval_images: int = 256
    image_size: int = 256
    max_persons: int = 1
    occlusion_probability: float = 0.0
    input_size: tuple[int, int] = (128, 96)
    teacher_size: str = "s"
    student_size: str = "t"
    teacher_epochs: int = 48
    student_epochs: int = 24
    stage2_epochs: int = 5
    batch_size: int = 16
    lr: float = 2e-3
    warmup_iters: int = 100
    augmentation: str = "final_stage"
    num_workers: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")


def make_datasets(work_dir: Path, settings: StudySettings) -> None:
    """Training set (generator seed 0) and held-out evaluation set (generator seed 1)."""
    for name, count, seed in (("train", settings.train_images, 0), ("eval", settings.eval_images, 1)):
        folder = work_dir / "data" / name
        if not (folder / "annotations.json").exists():
            generator = SyntheticConfig(
                num_images=count,
                image_size=(settings.image_size, settings.image_size),
                max_persons=settings.max_persons,
                occlusion_probability=settings.occlusion_probability,
                seed=seed,
            )
            generate_synthetic_dataset(folder, generator)


def run_config(
    settings: StudySettings, work_dir: Path, name: str, size: str, epochs: int, seed: int
) -> TrainConfig:
    """One arm's training settings (same optimiser, data, augmentation and evaluation for every arm).

    ``final_stage`` augmentation runs the recipe's milder last-epochs pipeline for the whole run;
    ``recipe`` switches to it for the last ``30/270`` of the epochs, as the published recipe does.
    """
    dataset = DatasetConfig(
        kind="coco_wholebody", annotation_file="train/annotations.json", image_root="train"
    )
    held_out = DatasetConfig(
        kind="coco_wholebody", annotation_file="eval/annotations.json", image_root="eval"
    )
    if settings.augmentation == "final_stage":
        augmentation, final_stage_epochs = AugmentationConfig().final_stage(), 0
    else:
        augmentation, final_stage_epochs = AugmentationConfig(), round(epochs * FINAL_STAGE_FRACTION)
    return TrainConfig(
        name=name,
        model=ModelConfig(size=size, input_size=settings.input_size),
        data=DataConfig(
            train=(dataset,),
            val=held_out,
            data_root=str(work_dir / "data"),
            batch_size=settings.batch_size,
            val_batch_size=64,
            num_workers=settings.num_workers,
        ),
        optim=OptimConfig(
            lr=settings.lr, weight_decay=0.05, base_batch_size=settings.batch_size, clip_grad_norm=1.0
        ),
        schedule=ScheduleConfig(
            max_epochs=epochs, warmup_iters=settings.warmup_iters, cosine_begin_epoch=epochs // 2
        ),
        ema=EmaConfig(enabled=True),
        augmentation=augmentation,
        final_stage_epochs=final_stage_epochs,
        channels_last=False,
        seed=seed,
        val_interval=epochs,
        val_flip_test=False,
        log_interval=10,
    )


AP_METRICS = ("wholebody_ap", "body_ap")


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The AP of the engine's last validation (final EMA weights on the held-out set)."""
    with open(run_dir / "val_log.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return {key: float(last[key]) for key in AP_METRICS}


def run_arm(run_dir: Path, config: TrainConfig, launch) -> dict[str, float]:
    """Run (or reuse) one arm for one seed; ``launch(run_dir)`` trains it, ``config`` describes
    the model that ``run_dir/last.pth`` holds (for the keypoint error)."""
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    started = time.perf_counter()
    launch(run_dir)
    seconds = round(time.perf_counter() - started, 1)
    metrics = {**final_metrics(run_dir), **run_keypoint_errors(run_dir, config), "seconds": seconds}
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics


def teacher_config(settings: StudySettings, work_dir: Path) -> TrainConfig:
    return run_config(
        settings, work_dir, "teacher", settings.teacher_size, settings.teacher_epochs, settings.teacher_seed
    )


def run_teacher(settings: StudySettings, work_dir: Path) -> tuple[Path, dict[str, float]]:
    """The one teacher of the study (seed ``teacher_seed``); every student seed distils from it."""
    config = teacher_config(settings, work_dir)
    run_dir = work_dir / "runs" / "teacher"
    metrics = run_arm(run_dir, config, lambda d: train(config, d, device=settings.device, progress=False))
    print(f"teacher (seed {settings.teacher_seed}): {metrics}", flush=True)
    return run_dir / "last.pth", metrics


def run_seed(
    settings: StudySettings, work_dir: Path, seed: int, teacher_checkpoint: Path
) -> dict[str, dict[str, float]]:
    """Student alone, stage 1 and stage 1 + 2 for one seed."""
    runs = work_dir / "runs" / f"seed{seed}"
    student_cfg = run_config(
        settings, work_dir, "student", settings.student_size, settings.student_epochs, seed
    )
    stage2_cfg = run_config(settings, work_dir, "stage2", settings.student_size, settings.stage2_epochs, seed)
    stage1 = Stage1Config(
        train=replace(student_cfg, name="stage1"),
        teacher=TeacherConfig(checkpoint=str(teacher_checkpoint), size=settings.teacher_size),
    )
    stage2 = Stage2Config(
        train=stage2_cfg,
        teacher=TeacherConfig(checkpoint=str(runs / "stage1" / "last.pth"), size=settings.student_size),
        head_init="scratch",
    )
    launchers = {
        "student_alone": (
            student_cfg,
            lambda d: train(student_cfg, d, device=settings.device, progress=False),
        ),
        "stage1": (stage1.train, lambda d: run_stage(stage1, d, device=settings.device, progress=False)),
        "stage1_2": (stage2_cfg, lambda d: run_stage(stage2, d, device=settings.device, progress=False)),
    }
    results = {}
    for arm in STUDENT_ARMS:
        config, launch = launchers[arm]
        results[arm] = run_arm(runs / arm, config, launch)
        print(f"seed {seed} {arm}: {results[arm]}", flush=True)
    return results


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict:
    """Per arm and metric: mean, sample std (ddof 1; NaN for a single run) and the runs' values.

    ``runs`` maps an arm to its runs' metrics in seed order (the teacher has one run).
    """
    summary = {}
    for arm in ARMS:
        if not runs.get(arm):
            continue
        entry = {}
        for metric in METRICS:
            values = [run[metric] for run in runs[arm]]
            entry[metric] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
                "per_seed": values,
            }
        entry["seconds_per_seed"] = [run["seconds"] for run in runs[arm]]
        summary[arm] = entry
    return summary


def _spread(std: float) -> str:
    return "(one run)" if std != std else f"+- {std:.4f}"


def markdown_table(summary: dict) -> str:
    """AP (higher is better) and keypoint error (lower is better), mean +- std and per seed."""
    lines = [
        "| arm | whole-body AP | per seed | body AP | per seed "
        "| whole-body error | per seed | body error | per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        if arm not in summary:
            continue
        cells = [arm]
        for metric in METRICS:
            stats = summary[arm][metric]
            cells.append(f"{stats['mean']:.4f} {_spread(stats['std'])}")
            cells.append(", ".join(f"{v:.4f}" for v in stats["per_seed"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> tuple[Path, StudySettings]:
    defaults = StudySettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="data, runs and the summary go here")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--train-images", type=int, default=defaults.train_images, help="smoke checks only")
    parser.add_argument("--eval-images", type=int, default=defaults.eval_images, help="smoke checks only")
    parser.add_argument(
        "--teacher-epochs", type=int, default=defaults.teacher_epochs, help="smoke checks only"
    )
    parser.add_argument(
        "--student-epochs", type=int, default=defaults.student_epochs, help="smoke checks only"
    )
    parser.add_argument("--stage2-epochs", type=int, default=defaults.stage2_epochs, help="smoke checks only")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="smoke checks only")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers, help="data loading workers")
    parser.add_argument("--device", default=defaults.device, help="where the runs train: cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    settings = replace(
        defaults,
        seeds=tuple(args.seeds),
        train_images=args.train_images,
        eval_images=args.eval_images,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.student_epochs,
        stage2_epochs=args.stage2_epochs,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
    )
    return args.work_dir, settings


def write_summary(work_dir: Path, settings: StudySettings, runs: dict[str, list[dict[str, float]]]) -> str:
    """``summary.json`` and ``summary.md`` of the runs finished so far; returns the table."""
    summary = summarise(runs)
    baseline = mean_pose_baseline(teacher_config(settings, work_dir))
    (work_dir / "summary.json").write_text(
        json.dumps({"settings": settings.__dict__, "arms": summary, "mean_pose_error": baseline}, indent=2)
    )
    table = markdown_table(summary) + (
        f"| fixed mean pose in the box (no model) | - | - | - | - | {baseline['wholebody_error']:.4f} | - "
        f"| {baseline['body_error']:.4f} | - |\n"
    )
    (work_dir / "summary.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    work_dir, settings = parse_args(argv)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "settings.json").write_text(json.dumps(settings.__dict__, indent=2, default=list))
    make_datasets(work_dir, settings)
    teacher_checkpoint, teacher_metrics = run_teacher(settings, work_dir)
    runs: dict[str, list[dict[str, float]]] = {"teacher": [teacher_metrics]}
    for seed in settings.seeds:
        for arm, metrics in run_seed(settings, work_dir, seed, teacher_checkpoint).items():
            runs.setdefault(arm, []).append(metrics)
        table = write_summary(work_dir, settings, runs)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
