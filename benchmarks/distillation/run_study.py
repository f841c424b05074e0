"""The distillation study of PROTOCOL.md: teacher, student alone, stage 1, stage 1 + 2, several seeds.

    nice -n 19 python benchmarks/distillation/run_study.py --work-dir runs/distill_study

Every run goes through the training engine (``training.engine.train``) and the distillation
stages (``training.distill.run_stage``); the held-out AP is the engine's final validation
(xtcocotools, ground-truth boxes, no flip test). Runs whose ``metrics.json`` exists are skipped,
so an interrupted study resumes where it stopped. The defaults are the protocol's; the scale
options exist for smoke checks of this script and their results are not the study's.
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
from training.distill import Stage1Config, Stage2Config, TeacherConfig, run_stage  # noqa: E402
from training.engine import train  # noqa: E402

ARMS = ("teacher", "student_alone", "stage1", "stage1_2")
METRICS = ("wholebody_ap", "body_ap")
FINAL_STAGE_FRACTION = 30 / 270  # the recipe's last-30-of-270 augmentation switch, kept in proportion


@dataclass(frozen=True)
class StudySettings:
    """The protocol's numbers (PROTOCOL.md); change them only for smoke checks."""

    seeds: tuple[int, ...] = (0, 1, 2)
    train_images: int = 1024
    eval_images: int = 256
    image_size: int = 256
    input_size: tuple[int, int] = (128, 96)
    teacher_size: str = "s"
    student_size: str = "t"
    teacher_epochs: int = 30
    student_epochs: int = 15
    stage2_epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    warmup_iters: int = 100
    num_workers: int = 0


def make_datasets(work_dir: Path, settings: StudySettings) -> None:
    """Training set (generator seed 0) and held-out evaluation set (generator seed 1)."""
    for name, count, seed in (("train", settings.train_images, 0), ("eval", settings.eval_images, 1)):
        folder = work_dir / "data" / name
        if not (folder / "annotations.json").exists():
            size = (settings.image_size, settings.image_size)
            generate_synthetic_dataset(folder, SyntheticConfig(num_images=count, image_size=size, seed=seed))


def run_config(
    settings: StudySettings, work_dir: Path, name: str, size: str, epochs: int, seed: int
) -> TrainConfig:
    """One arm's training settings (same optimiser, data and evaluation for every arm)."""
    dataset = DatasetConfig(
        kind="coco_wholebody", annotation_file="train/annotations.json", image_root="train"
    )
    held_out = DatasetConfig(
        kind="coco_wholebody", annotation_file="eval/annotations.json", image_root="eval"
    )
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
        final_stage_epochs=round(epochs * FINAL_STAGE_FRACTION),
        channels_last=False,
        seed=seed,
        val_interval=epochs,
        val_flip_test=False,
        log_interval=10,
    )


def final_metrics(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "val_log.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return {key: float(last[key]) for key in METRICS}


def run_arm(run_dir: Path, launch) -> dict[str, float]:
    """Run (or reuse) one arm for one seed; ``launch(run_dir)`` trains it."""
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    started = time.perf_counter()
    launch(run_dir)
    metrics = {**final_metrics(run_dir), "seconds": round(time.perf_counter() - started, 1)}
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics


def run_seed(settings: StudySettings, work_dir: Path, seed: int) -> dict[str, dict[str, float]]:
    runs = work_dir / "runs" / f"seed{seed}"
    teacher_cfg = run_config(
        settings, work_dir, "teacher", settings.teacher_size, settings.teacher_epochs, seed
    )
    student_cfg = run_config(
        settings, work_dir, "student", settings.student_size, settings.student_epochs, seed
    )
    stage2_cfg = run_config(settings, work_dir, "stage2", settings.student_size, settings.stage2_epochs, seed)
    teacher_dir, stage1_dir = runs / "teacher", runs / "stage1"
    stage1 = Stage1Config(
        train=replace(student_cfg, name="stage1"),
        teacher=TeacherConfig(checkpoint=str(teacher_dir / "last.pth"), size=settings.teacher_size),
    )
    stage2 = Stage2Config(
        train=stage2_cfg,
        teacher=TeacherConfig(checkpoint=str(stage1_dir / "last.pth"), size=settings.student_size),
        head_init="scratch",
    )
    launchers = {
        "teacher": lambda d: train(teacher_cfg, d, device="cpu", progress=False),
        "student_alone": lambda d: train(student_cfg, d, device="cpu", progress=False),
        "stage1": lambda d: run_stage(stage1, d, device="cpu", progress=False),
        "stage1_2": lambda d: run_stage(stage2, d, device="cpu", progress=False),
    }
    results = {}
    for arm in ARMS:
        results[arm] = run_arm(runs / arm, launchers[arm])
        print(f"seed {seed} {arm}: {results[arm]}", flush=True)
    return results


def summarise(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict:
    summary = {}
    for arm in ARMS:
        entry = {}
        for metric in METRICS:
            values = [per_seed[seed][arm][metric] for seed in sorted(per_seed)]
            entry[metric] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
                "per_seed": values,
            }
        entry["seconds_per_seed"] = [per_seed[seed][arm]["seconds"] for seed in sorted(per_seed)]
        summary[arm] = entry
    return summary


def markdown_table(summary: dict) -> str:
    lines = [
        "| arm | whole-body AP (mean +- std) | per seed | body AP (mean +- std) | per seed |",
        "|---|---|---|---|---|",
    ]
    for arm in ARMS:
        cells = [arm]
        for metric in METRICS:
            stats = summary[arm][metric]
            cells.append(f"{stats['mean']:.4f} +- {stats['std']:.4f}")
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
    )
    return args.work_dir, settings


def main(argv: list[str] | None = None) -> int:
    work_dir, settings = parse_args(argv)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "settings.json").write_text(json.dumps(settings.__dict__, indent=2, default=list))
    make_datasets(work_dir, settings)
    per_seed = {seed: run_seed(settings, work_dir, seed) for seed in settings.seeds}
    summary = summarise(per_seed)
    (work_dir / "summary.json").write_text(
        json.dumps({"settings": settings.__dict__, "arms": summary}, indent=2)
    )
    table = markdown_table(summary)
    (work_dir / "summary.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
