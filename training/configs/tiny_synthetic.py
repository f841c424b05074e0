"""A tiny run for tests and smoke checks: RTMPose-t at 64x48 on a synthetic dataset.

Generate the data first: ``python -m training make-synthetic data/synthetic --num-images 64``
(``data/synthetic/annotations.json`` + ``images/``); point ``data.data_root`` at its parent.
"""

from training.config import DataConfig, DatasetConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig

synthetic = DatasetConfig(
    kind="coco_wholebody", annotation_file="synthetic/annotations.json", image_root="synthetic"
)

CONFIG = TrainConfig(
    name="tiny-synthetic",
    model=ModelConfig(size="t", input_size=(64, 64)),
    data=DataConfig(
        train=(synthetic,), val=synthetic, data_root="data", batch_size=8, val_batch_size=16, num_workers=0
    ),
    optim=OptimConfig(lr=4e-3, weight_decay=0.05, base_batch_size=8, clip_grad_norm=None),
    schedule=ScheduleConfig(max_epochs=4, warmup_iters=4, cosine_begin_epoch=2),
    final_stage_epochs=1,
    channels_last=False,
    val_interval=2,
    val_flip_test=False,
    log_interval=1,
)
