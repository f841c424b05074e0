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
from pathlib import Path

HELP = "train a model from a config file"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, --set and --data-root (shared by the commands that read a config)."""
    parser.add_argument(
        "--config",
        required=True,
        help="config file, or the name of one in training/configs (e.g. rtmpose_l_256x192)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field with a Python literal, e.g. --set optim.lr=1e-3 (repeatable)",
    )
    parser.add_argument("--data-root", help="folder the config's relative dataset paths start from")


def load_config_from_args(args: argparse.Namespace):
    from training.config import apply_overrides, load_config

    config = apply_overrides(load_config(args.config), args.overrides)
    if args.data_root:
        config = apply_overrides(config, [f"data.data_root={str(args.data_root)!r}"])
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--work-dir", type=Path, help="output folder (default: work_dirs/<config name>)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore WORK_DIR/last.pth and start from scratch"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, help="torch CPU threads per process (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.engine import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config_from_args(args)
    work_dir = args.work_dir or Path("work_dirs") / config.name
    summary = train(
        config, work_dir, device=args.device, resume=not args.no_resume, progress=not args.no_progress
    )
    print(
        f"done: {summary.epochs} epochs, {summary.iterations} iterations, last loss {summary.last_loss:.5f}, "
        f"best metric {summary.best_metric}, checkpoint {summary.checkpoint}"
    )
    return 0
