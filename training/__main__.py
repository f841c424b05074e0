"""``python -m training <command>``: the trainer's command line.

Each command is a module with ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``;
adding a command is one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dwpose_ctrl.extras import MissingExtraError

COMMANDS: dict[str, str] = {
    "train": "training.commands.train",
    "warmup": "training.commands.warmup",
    "demo": "training.commands.demo",
    "eval": "training.commands.evaluate",
    "make-synthetic": "training.commands.synthetic",
    "extract-ubody-frames": "training.commands.ubody_frames",
    "distill": "training.commands.distill",
    "self-distill": "training.commands.self_distill",
    "export": "training.commands.export",
}


TRAIN_EXTRA_MODULES = ("torch", "safetensors", "onnxscript", "albumentations", "tensorboard", "matplotlib")
"""Top-level modules of the '[train]' extra: a command missing one of them names the extra."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train and evaluate RTMPose whole-body models (pure PyTorch, no mmcv/mmpose).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input (config, data, checkpoints) gives one ``error:`` line and exit 2,
    and so does a missing package of the '[train]' extra."""
    try:
        parser = build_parser()  # some command modules import torch
    except ModuleNotFoundError as error:
        return report_missing_train_extra(error)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, OSError) as error:
        print(f"{parser.prog} {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        return report_missing_train_extra(error)


def report_missing_train_extra(error: ModuleNotFoundError) -> int:
    """Print the one-line error for a missing '[train]' package (the same whether it shows while
    the commands are loaded or while one runs, which depends on what is already imported); exit 2."""
    print(f"python -m training: error: {missing_train_extra(error, 'the trainer')}", file=sys.stderr)
    return 2


def missing_train_extra(error: ModuleNotFoundError, purpose: str) -> MissingExtraError:
    """The one-line error for a missing package of the '[train]' extra; other errors re-raised."""
    missing = (error.name or "").partition(".")[0]
    if missing not in TRAIN_EXTRA_MODULES:
        raise error
    return MissingExtraError(missing, "train", purpose)


def one_line(error: BaseException) -> str:
    """The message of an error as one line; for an error re-raised from a DataLoader worker
    (whose message embeds the worker's traceback), the original error's own last line."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    if lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]
    return " ".join(line.strip() for line in lines)


if __name__ == "__main__":
    sys.exit(main())
