"""The trainer learning, end to end on a fresh checkout: synthetic people, backbone warm-up, recipe.

:func:`run_demo` makes a synthetic training set and a held-out set (other generator seed), warms
up an RTMPose-t backbone with the GAU bypassed (:mod:`training.warmup`), trains RTMPose-t with the
official RTMCC head on it (mmpose's head initialisation, the recipe's final-stage augmentation)
and scores the final EMA weights on the held-out persons (:mod:`training.localisation`). The
body layout (17 keypoints) at 128x96 keeps it to minutes on two CPU cores.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from training.config import (
    DataConfig,
    DatasetConfig,
    EmaConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from training.data.synthetic import SyntheticConfig, generate_synthetic_dataset
from training.data.transforms import AugmentationConfig
from training.engine import train
from training.localisation import localisation_report
from training.warmup import hand_over, run_warmup

TRAIN_SEED, HELD_OUT_SEED = 0, 1


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults are the documented run, smaller values are for smoke tests."""

    train_images: int = 1024
    eval_images: int = 256
    image_size: int = 256
    model_size: str = "t"
    input_size: tuple[int, int] = (128, 96)
    batch_size: int = 16
    warmup_iterations: int = 3200
    warmup_lr: float = 2e-3
    iterations: int = 800
    lr: float = 2e-3
    seed: int = 0


def make_data(data_root: Path, train_images: int, eval_images: int, image_size: int) -> None:
    """``train/`` (generator seed 0) and ``eval/`` (seed 1) of ``image_size`` squares: one person per
    image, no occluders. Sets already there are kept."""
    sets = (("train", train_images, TRAIN_SEED), ("eval", eval_images, HELD_OUT_SEED))
    for name, count, seed in sets:
        if not (data_root / name / "annotations.json").exists():
            generator = SyntheticConfig(
                num_images=count,
                image_size=(image_size, image_size),
                max_persons=1,
                occlusion_probability=0.0,
                seed=seed,
            )
            generate_synthetic_dataset(data_root / name, generator)


def _epochs(iterations: int, data_root: Path, batch_size: int) -> int:
    persons = len(json.loads((data_root / "train" / "annotations.json").read_text())["annotations"])
    return max(1, math.ceil(iterations / max(persons // batch_size, 1)))


def demo_config(settings: DemoSettings, data_root: Path, iterations: int, lr: float) -> TrainConfig:
    """RTMPose of the demo on the synthetic sets: 17 body keypoints, AdamW with warm-up and cosine,
    gradient clipping 1.0, EMA, the recipe's final-stage augmentation."""
    epochs = _epochs(iterations, data_root, settings.batch_size)
    final = AugmentationConfig().final_stage()
    return TrainConfig(
        name=f"demo-rtmpose-{settings.model_size}",
        model=ModelConfig(size=settings.model_size, input_size=settings.input_size, keypoints="coco_body"),
        data=DataConfig(
            train=(DatasetConfig(annotation_file="train/annotations.json", image_root="train"),),
            val=DatasetConfig(annotation_file="eval/annotations.json", image_root="eval"),
            data_root=str(data_root),
            batch_size=settings.batch_size,
            val_batch_size=64,
            num_workers=0,
        ),
        optim=OptimConfig(lr=lr, base_batch_size=settings.batch_size, clip_grad_norm=1.0),
        schedule=ScheduleConfig(
            max_epochs=epochs, warmup_iters=min(100, iterations // 4), cosine_begin_epoch=epochs // 2
        ),
        ema=EmaConfig(enabled=True),
        augmentation=final,
        final_augmentation=final,
        final_stage_epochs=0,
        channels_last=False,
        seed=settings.seed,
        val_interval=epochs + 1,
        val_flip_test=False,
        log_interval=10,
    )


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "train_log.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def run_demo(
    work_dir: str | Path, settings: DemoSettings = DemoSettings(), device: str | None = None
) -> dict:
    """Data, warm-up, training and the held-out scores; returns (and writes ``result.json``) the numbers."""
    started = time.perf_counter()
    work_dir = Path(work_dir)
    data_root = work_dir / "data"
    make_data(data_root, settings.train_images, settings.eval_images, settings.image_size)
    warmup = run_warmup(
        demo_config(settings, data_root, settings.warmup_iterations, settings.warmup_lr),
        work_dir / "warmup",
        device=device,
        progress=False,
    )
    print(f"warm-up: {warmup.report.describe()}", flush=True)
    config = hand_over(demo_config(settings, data_root, settings.iterations, settings.lr), warmup.backbone)
    summary = train(
        replace(config, data=replace(config.data, val=None)),
        work_dir / "train",
        device=device,
        progress=False,
    )
    model = (summary.ema.module if summary.ema is not None else summary.task).model
    report = localisation_report(model, config, device=str(next(model.parameters()).device))
    losses = _losses(work_dir / "train")
    result = {
        "body_ap": report.body_ap,
        "body_ap50": report.body_ap50,
        "median_error": report.median_error,
        "mean_pose_error": report.mean_pose_error,
        "median_error_over_mean_pose": report.median_error_over_mean_pose,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "iterations": summary.iterations,
        "warmup": {**warmup.report.to_dict(), "iterations": warmup.summary.iterations},
        "settings": asdict(settings),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (work_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result
