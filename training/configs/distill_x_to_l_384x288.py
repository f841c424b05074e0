"""DWPose stage 1: RTMPose-x teacher -> RTMPose-l student, 384x288, COCO-WholeBody + UBody.

The student follows the published RTMPose-l whole-body recipe (270 epochs, AdamW 4e-3, EMA) with
gradient clipping 1.0; the teacher is frozen in eval mode. Train the teacher first
(`python -m training train --config rtmpose_x_384x288`) or point `teacher.checkpoint` at an official
RTMPose-x whole-body checkpoint (`--set teacher.checkpoint='PATH'`).
"""

from dataclasses import replace

from training.config import wholebody_recipe
from training.distill import Stage1Config, TeacherConfig

_student = wholebody_recipe(size="l", input_size=(384, 288))

CONFIG = Stage1Config(
    train=replace(
        _student,
        name="dwpose-x-to-l_stage1_coco-ubody-wholebody-384x288",
        optim=replace(_student.optim, clip_grad_norm=1.0),
    ),
    teacher=TeacherConfig(checkpoint="work_dirs/rtmpose-x_coco-ubody-wholebody-384x288/best.pth", size="x"),
)
