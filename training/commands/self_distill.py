"""DWPose stage 2: head-aware self-distillation of a stage-1 model (SPEC section 10).

The stage-1 model is the frozen teacher; the student shares its backbone (frozen, eval mode) and
only a new head trains, on the logit loss at weight 1 (no GT loss, no decay). Examples:
  python -m training self-distill --config self_distill_t_256x192 --set teacher.checkpoint=s1/best.pth
  python -m training self-distill --config self_distill_tiny_synthetic --data-root /tmp/data --device cpu
  ... --set head_init='teacher'   # start from the teacher's head (the paper) instead of scratch

WORK_DIR/best.pth and last.pth hold ONE model under ``state_dict``: the teacher's backbone with
the trained student head (``python -m training export`` turns it into ONNX).
"""

from __future__ import annotations

import argparse

from training.commands.distill import add_arguments, run_distill_command

HELP = "DWPose stage 2: head-aware self-distillation (frozen backbone, new head)"
STAGE = 2
__all__ = ["HELP", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    return run_distill_command(args, STAGE)
