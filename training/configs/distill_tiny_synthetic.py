"""Stage 1 at toy scale (tests and smoke checks): RTMPose-t student at 64x64 on synthetic data.

Generate the data (``python -m training make-synthetic data/synthetic --num-images 64``), train a
teacher (``python -m training train --config tiny_synthetic``), then
``python -m training distill --config distill_tiny_synthetic``.
"""

from dataclasses import replace

from training.config import load_config
from training.distill import Stage1Config, TeacherConfig

_TINY = load_config("tiny_synthetic")

CONFIG = Stage1Config(
    train=replace(_TINY, name="tiny-synthetic-stage1", optim=replace(_TINY.optim, clip_grad_norm=1.0)),
    teacher=TeacherConfig(checkpoint="work_dirs/tiny-synthetic/last.pth"),
)
