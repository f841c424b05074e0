"""Train an RTMPose model from a config file (single process, or DDP under torchrun).

Examples:
  python -m training train --config rtmpose_l_256x192 --set data.data_root=/data
  torchrun --nproc-per-node 8 -m training train --config rtmpose_l_256x192 --work-dir runs/l
  python -m training train --config tiny_synthetic --set schedule.max_epochs=2 --device cpu

The run resumes from WORK_DIR/last.pth when it exists (use --no-resume to start over); logs go to
WORK_DIR/train_log.csv, val_log.csv, tensorboard/ and curves.png; the best validation model to
WORK_DIR/best.pth.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from training.commands.common import (
    add_config_arguments,
    add_run_arguments,
    apply_config_arguments,
    print_run_summary,
    work_dir_from_args,
)

if TYPE_CHECKING:
    from training.config import TrainConfig

HELP = "train a model from a config file"


def load_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The --config file with --set and --data-root applied."""
    from training.config import load_config

    return apply_config_arguments(load_config(args.config), args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, config_example="rtmpose_l_256x192", set_example="optim.lr=1e-3")
    add_run_arguments(parser)
    parser.add_argument("--threads", type=int, help="torch CPU threads per process (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.engine import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config_from_args(args)
    summary = train(
        config,
        work_dir_from_args(args, config.name),
        device=args.device,
        resume=not args.no_resume,
        progress=not args.no_progress,
        skip_bad_samples=args.skip_bad_samples,
    )
    print_run_summary(summary)
    return 0
