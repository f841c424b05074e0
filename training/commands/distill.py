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

from training.commands.common import (
    add_config_arguments,
    add_run_arguments,
    apply_config_arguments,
    print_run_summary,
    work_dir_from_args,
)

HELP = "DWPose stage 1: distil a frozen teacher into a student"
STAGE = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser, config_example="distill_l_to_t_256x192", set_example="teacher.checkpoint='t.pth'"
    )
    add_run_arguments(parser)


def run_distill_command(args: argparse.Namespace, stage: int) -> int:
    """Shared by ``distill`` (stage 1) and ``self-distill`` (stage 2)."""
    from training.distill import load_distill_config, run_stage

    config = apply_config_arguments(
        load_distill_config(args.config, stage), args, data_root_field="train.data.data_root"
    )
    summary = run_stage(
        config,
        work_dir_from_args(args, config.train.name),
        device=args.device,
        resume=not args.no_resume,
        progress=not args.no_progress,
        skip_bad_samples=args.skip_bad_samples,
    )
    print_run_summary(summary)
    return 0


def run(args: argparse.Namespace) -> int:
    return run_distill_command(args, STAGE)
