"""Stage 2 at toy scale (tests and smoke checks): the tiny stage-1 RTMPose-t gets a new head.

Run after ``python -m training distill --config distill_tiny_synthetic``; one epoch (about 20 %
of the tiny stage 1's four would round to one).
"""

from dataclasses import replace

from training.config import ScheduleConfig, load_config
from training.distill import Stage2Config, TeacherConfig

_TINY = load_config("tiny_synthetic")

CONFIG = Stage2Config(
    train=replace(
        _TINY,
        name="tiny-synthetic-stage2",
        optim=replace(_TINY.optim, clip_grad_norm=1.0),
        schedule=ScheduleConfig(max_epochs=1, warmup_iters=2, cosine_begin_epoch=0),
        final_stage_epochs=0,
        val_interval=1,
    ),
    teacher=TeacherConfig(checkpoint="work_dirs/tiny-synthetic-stage1/last.pth"),
    head_init="scratch",
)
