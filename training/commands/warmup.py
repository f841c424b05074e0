"""Warm up a backbone when no pose-pretrained one exists (own data, a new size, offline).

Trains the config's backbone with the head's GAU bypassed, on the 17 body keypoints and without
augmentation, then reports whether it localises (held-out body AP and median keypoint error
against the fixed mean pose) and writes WORK_DIR/backbone.pth for the normal recipe. Give the
warm-up its own schedule with --set; the published recipe's 270 epochs are far more than needed.

Examples:
  python -m training warmup --config rtmpose_t_256x192 --work-dir runs/t_warmup \\
      --set schedule.max_epochs=30 --set optim.lr=2e-3
  python -m training train --config rtmpose_t_256x192 \\
      --set model.init_checkpoint='runs/t_warmup/backbone.pth'

Exit status 0 when the gate passes, 1 when the backbone does not localise yet (train it longer).
"""

from __future__ import annotations

import argparse

from training.commands.common import add_config_arguments, add_run_arguments, work_dir_from_args
from training.localisation import MAX_ERROR_RATIO, MIN_BODY_AP

HELP = "train a backbone with the GAU bypassed (no pretrained backbone) and check that it localises"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, config_example="rtmpose_t_256x192", set_example="schedule.max_epochs=30")
    add_run_arguments(parser)
    parser.add_argument(
        "--min-body-ap", type=float, default=MIN_BODY_AP, help="gate: held-out body AP at least"
    )
    parser.add_argument(
        "--max-error-ratio",
        type=float,
        default=MAX_ERROR_RATIO,
        help="gate: median body error at most this fraction of the fixed mean pose's",
    )


def run(args: argparse.Namespace) -> int:
    from training.commands.train import load_config_from_args
    from training.warmup import run_warmup

    config = load_config_from_args(args)
    work_dir = work_dir_from_args(args, f"{config.name}_backbone-warmup")
    result = run_warmup(
        config,
        work_dir,
        device=args.device,
        progress=not args.no_progress,
        min_body_ap=args.min_body_ap,
        max_error_ratio=args.max_error_ratio,
    )
    print(result.report.describe())
    print(f"backbone: {result.backbone} (train with --set model.init_checkpoint='{result.backbone}')")
    return 0 if result.report.localises else 1
