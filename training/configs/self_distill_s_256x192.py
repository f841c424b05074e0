"""DWPose stage 2: head-aware self-distillation of the stage-1 RTMPose-s (l -> s), 256x192.

The stage-1 model is the frozen teacher; only a new head trains (from scratch, as the reference
does; `--set head_init='teacher'` starts from the teacher's head), with the logit loss at weight
1, for 60 epochs (about 20 % of stage 1's 270); warm-up 1000 iterations, then a flat lr and the
strong augmentation throughout, as DWPose's stage-2 configs run (they inherit a cosine that starts
at epoch 135 and a pipeline switch at epoch 240 of the 270-epoch recipe).
The result (`best.pth`/`last.pth`) is the teacher's backbone with the new head.
"""

from dataclasses import replace

from training.config import ScheduleConfig, wholebody_recipe
from training.distill import Stage2Config, TeacherConfig

_model = wholebody_recipe(size="s", input_size=(256, 192))

CONFIG = Stage2Config(
    train=replace(
        _model,
        name="dwpose-l-to-s_stage2_coco-ubody-wholebody-256x192",
        optim=replace(_model.optim, clip_grad_norm=1.0),
        schedule=ScheduleConfig(max_epochs=60, warmup_iters=1000, cosine_begin_epoch=60, min_lr_factor=0.05),
        final_stage_epochs=0,
    ),
    teacher=TeacherConfig(
        checkpoint="work_dirs/dwpose-l-to-s_stage1_coco-ubody-wholebody-256x192/best.pth", size="s"
    ),
    head_init="scratch",
)
