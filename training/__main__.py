"""``python -m training <command>``: the trainer's command line.

Each command is a module with ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``;
adding a command is one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
