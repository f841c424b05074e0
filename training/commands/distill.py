"""DWPose stage 1: distil a frozen teacher into a student (SPEC section 10).

The student trains with ``L_gt + r(t) * (L_fea + L_logit)``, ``r(t) = 1 - epoch / max_epochs``;
the teacher runs frozen in eval mode. Examples:
  python -m training distill --config distill_l_to_t_256x192 --set teacher.checkpoint=l.pth
  python -m training distill --config distill_tiny_synthetic --data-root /tmp/data --device cpu
  torchrun --nproc-per-node 8 -m training distill --config distill_x_to_l_384x288

Fields are overridden with --set: student settings under ``train.`` (``--set train.optim.lr=1e-3``),
the teacher under ``teacher.`` (``checkpoint``, ``part``, ``size``). WORK_DIR/best.pth and last.pth
hold the student under ``state_dict``; ``python -m training export`` turns it into ONNX.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "DWPose stage 1: distil a frozen teacher into a student"
STAGE = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="config file, or the name of one in training/configs (e.g. distill_l_to_t_256x192)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field with a Python literal, e.g. --set teacher.checkpoint='t.pth' (repeatable)",
    )
    parser.add_argument("--data-root", help="folder the config's relative dataset paths start from")
    parser.add_argument("--work-dir", type=Path, help="output folder (default: work_dirs/<config name>)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore WORK_DIR/last.pth and start from scratch"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_distill_command(args: argparse.Namespace, stage: int) -> int:
    """Shared by ``distill`` (stage 1) and ``self-distill`` (stage 2)."""
    from training.config import apply_overrides
    from training.distill import load_distill_config, run_stage

    config = apply_overrides(load_distill_config(args.config, stage), args.overrides)
    if args.data_root:
        config = apply_overrides(config, [f"train.data.data_root={str(args.data_root)!r}"])
    work_dir = args.work_dir or Path("work_dirs") / config.train.name
    summary = run_stage(
        config, work_dir, device=args.device, resume=not args.no_resume, progress=not args.no_progress
    )
    print(
        f"done: {summary.epochs} epochs, {summary.iterations} iterations, last loss {summary.last_loss:.5f}, "
        f"best metric {summary.best_metric}, checkpoint {summary.checkpoint}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    return run_distill_command(args, STAGE)
