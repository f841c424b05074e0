"""Command-line pieces shared by the training commands: one definition per option."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from training.engine import TrainSummary

ConfigT = TypeVar("ConfigT")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    *,
    config_example: str,
    set_example: str,
    required: bool = True,
    config_note: str = "",
) -> None:
    """--config, --set and --data-root: which config file to load and how to change it.

    ``config_example`` names a config in training/configs and ``set_example`` is a ``FIELD=VALUE``
    override, both shown in the help; ``config_note`` is appended to the help of --config.
    """
    parser.add_argument(
        "--config",
        required=required,
        help=f"config file, or the name of one in training/configs (e.g. {config_example}){config_note}",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"override a config field with a Python literal, e.g. --set {set_example} (repeatable)",
    )
    parser.add_argument("--data-root", help="folder the config's relative dataset paths start from")


def apply_config_arguments(
    config: ConfigT, args: argparse.Namespace, data_root_field: str = "data.data_root"
) -> ConfigT:
    """``config`` with the --set overrides, then --data-root written to ``data_root_field``."""
    from training.config import apply_overrides

    config = apply_overrides(config, args.overrides)
    if args.data_root:
        config = apply_overrides(config, [f"{data_root_field}={str(args.data_root)!r}"])
    return config


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--work-dir, --device, --no-resume, --no-progress and --skip-bad-samples: how a run goes."""
    parser.add_argument("--work-dir", type=Path, help="output folder (default: work_dirs/<config name>)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore WORK_DIR/last.pth and start from scratch"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_skip_bad_samples_argument(parser)


def add_skip_bad_samples_argument(parser: argparse.ArgumentParser) -> None:
    """--skip-bad-samples: leave out bad samples instead of stopping before the first step."""
    parser.add_argument(
        "--skip-bad-samples",
        action="store_true",
        help="leave out samples whose image is missing, unreadable or corrupt or whose box is not finite "
        "(with a warning); without it such samples stop the run before the first step, all listed",
    )


def work_dir_from_args(args: argparse.Namespace, config_name: str) -> Path:
    """--work-dir, or work_dirs/<config name> without it."""
    return args.work_dir or Path("work_dirs") / config_name


def print_run_summary(summary: TrainSummary) -> None:
    """One line on what a finished training run left behind."""
    print(
        f"done: {summary.epochs} epochs, {summary.iterations} iterations, last loss {summary.last_loss:.5f}, "
        f"best metric {summary.best_metric}, checkpoint {summary.checkpoint}"
    )
