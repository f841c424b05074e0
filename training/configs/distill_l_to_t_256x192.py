"""DWPose stage 1: RTMPose-l teacher -> RTMPose-t student, 256x192, COCO-WholeBody + UBody.

The student follows the published RTMPose-t whole-body recipe (270 epochs, AdamW 4e-3, EMA) with
gradient clipping 1.0; the teacher is frozen in eval mode. Train the teacher first
(`python -m training train --config rtmpose_l_256x192`) or point `teacher.checkpoint` at an official
RTMPose-l whole-body checkpoint (`--set teacher.checkpoint='PATH'`).
"""

from dataclasses import replace

from training.config import wholebody_recipe
from training.distill import Stage1Config, TeacherConfig

_student = wholebody_recipe(size="t", input_size=(256, 192))

CONFIG = Stage1Config(
    train=replace(
        _student,
        name="dwpose-l-to-t_stage1_coco-ubody-wholebody-256x192",
        optim=replace(_student.optim, clip_grad_norm=1.0),
    ),
    teacher=TeacherConfig(checkpoint="work_dirs/rtmpose-l_coco-ubody-wholebody-256x192/best.pth", size="l"),
)
