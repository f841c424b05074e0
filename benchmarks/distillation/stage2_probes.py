"""Probes made after part A of protocol v3 (not study runs): why stage 1 + 2 scored below stage 1.

    python benchmarks/distillation/stage2_probes.py --study-dir runs/distill_study_v3 \
        --name stage2_832 --iterations 800

Each probe repeats the study's stage 2 for one seed of part A (the stage-1 model as teacher, a new
head from scratch on its frozen backbone, logit KD only) with one thing changed: its length
(``--iterations``), a flat lr after the warm-up (``--flat-lr``, the shape the official stage-2
configs end up with) or the teacher's BatchNorm layers in train mode (``--teacher-batchnorm-train``,
as the reference runner leaves them; here by overriding ``Stage2SelfDistiller.train`` in this
process only). Results go to ``--study-dir/probes/NAME/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

STUDY_DIR = Path(__file__).resolve().parent
if str(STUDY_DIR) not in sys.path:
    sys.path.insert(0, str(STUDY_DIR))

import run_study  # noqa: E402

from training import distill  # noqa: E402

DISTILLER_TRAIN = distill.Stage2SelfDistiller.train


def train_with_teacher_batchnorm(self: distill.Stage2SelfDistiller, mode: bool = True):
    """``Stage2SelfDistiller.train`` with the teacher's BatchNorm following ``mode`` (weights frozen)."""
    DISTILLER_TRAIN(self, mode)
    for module in self.teacher.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train(mode)
    return self


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study-dir", type=Path, required=True, help="the study's --work-dir")
    parser.add_argument("--name", required=True, help="the probe's folder under STUDY_DIR/probes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=run_study.StudySettings().stage2_iterations)
    parser.add_argument("--flat-lr", action="store_true", help="no cosine within the run")
    parser.add_argument("--teacher-batchnorm-train", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.teacher_batchnorm_train:
        distill.Stage2SelfDistiller.train = train_with_teacher_batchnorm
    settings = run_study.StudySettings(stage2_iterations=args.iterations)
    study = args.study_dir.resolve()
    config = run_study.student_config(settings, study, "A", "stage1_2", args.seed)
    if args.flat_lr:
        config = replace(
            config, schedule=replace(config.schedule, cosine_begin_epoch=config.schedule.max_epochs)
        )
    stage = distill.Stage2Config(
        train=run_study.without_validation(config),
        teacher=distill.TeacherConfig(
            checkpoint=str(study / "A" / f"seed{args.seed}" / "stage1" / "last.pth"),
            size=settings.student_size,
        ),
        head_init="scratch",
    )
    run_dir = study / "probes" / args.name
    started = time.perf_counter()
    summary = distill.run_stage(stage, run_dir, device="cpu", progress=False)
    result = run_study.finished_run(run_dir, config, settings, summary, started)
    run_study.write_result(
        run_dir / run_study.RESULT_NAME, {**result, "probe": vars(args) | {"study_dir": str(study)}}
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
