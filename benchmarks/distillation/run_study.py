"""The distillation study of PROTOCOL.md (version 3): backbone warm-ups, then per part (17 body
keypoints, all 133) one teacher, the preconditions, and per seed the student alone, stage 1 and
stage 1 + 2.

    nice -n 5 python benchmarks/distillation/run_study.py --work-dir runs/distill_study_v3

Every run goes through the toolbox: ``training.warmup.run_warmup`` (GAU bypassed, gate),
``training.engine.train`` and ``training.distill.run_stage``. Each finished run's final EMA weights
(``last.pth``) are scored on the held-out set by ``training.localisation`` (body AP and AP50 via
xtcocotools with ground-truth boxes and no flip test, median errors over the box diagonal) and the
numbers are written to the run's ``metrics.json``; a step whose result file exists is not run
again, so an interrupted study resumes where it stopped.

The steps form a graph (a run starts once the runs it needs have finished) and ``--workers``
processes run them, part A's steps first; with two CPU cores two single-threaded workers train
more per second than one two-threaded process. The defaults are the protocol's; the scale options
exist for smoke checks of this script, and their results are not the study's.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.config import (  # noqa: E402
    DataConfig,
    DatasetConfig,
    EmaConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from training.data.transforms import AugmentationConfig  # noqa: E402
from training.demo import make_data  # noqa: E402
from training.localisation import MAX_ERROR_RATIO, MIN_BODY_AP  # noqa: E402

PARTS = {"A": "coco_body", "B": "coco_wholebody"}
ARMS = ("teacher", "student_alone", "stage1", "stage1_2")
STUDENT_ARMS = ARMS[1:]
METRICS = ("body_ap", "body_ap50", "median_error", "wholebody_median_error")
RESULT_NAME = "metrics.json"


@dataclass(frozen=True)
class StudySettings:
    """The protocol's numbers (PROTOCOL.md, version 3); change them only for smoke checks."""

    parts: tuple[str, ...] = ("A", "B")
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher_seed: int = 0
    train_images: int = 1024
    eval_images: int = 256
    image_size: int = 256
    input_size: tuple[int, int] = (128, 96)
    teacher_size: str = "s"
    student_size: str = "t"
    warmup_iterations: int = 2000
    warmup_extension: int = 1000
    warmup_max_extensions: int = 2
    teacher_iterations: int = 1600
    teacher_extension: int = 1600
    student_iterations: int = 800
    stage2_iterations: int = 160
    batch_size: int = 16
    lr: float = 2e-3
    lr_warmup_iterations: int = 100
    gate_min_body_ap: float = MIN_BODY_AP
    gate_max_error_ratio: float = MAX_ERROR_RATIO
    min_teacher_ap50: float = 0.5
    max_teacher_error_ratio: float = 0.5
    device: str = "cpu"
    threads: int = 1

    def __post_init__(self) -> None:
        unknown = [part for part in self.parts if part not in PARTS]
        if unknown:
            raise ValueError(f"parts must be among {tuple(PARTS)}, got {unknown}")


# --- data and configs -------------------------------------------------------------------------------


def epochs_for(iterations: int, settings: StudySettings) -> int:
    """Whole engine epochs covering ``iterations`` (one person per training image, last batch dropped)."""
    return math.ceil(iterations / (settings.train_images // settings.batch_size))


def study_config(
    settings: StudySettings, work_dir: Path, name: str, size: str, keypoints: str, iterations: int, seed: int
) -> TrainConfig:
    """One run's settings: the same data, optimiser, schedule rule and augmentation for every arm.

    The held-out set is ``data.val`` (scored after training by ``training.localisation``); the
    recipe's final-stage augmentation runs throughout.
    """
    epochs = epochs_for(iterations, settings)
    final = AugmentationConfig().final_stage()
    return TrainConfig(
        name=name,
        model=ModelConfig(size=size, input_size=settings.input_size, keypoints=keypoints),
        data=DataConfig(
            train=(DatasetConfig(annotation_file="train/annotations.json", image_root="train"),),
            val=DatasetConfig(annotation_file="eval/annotations.json", image_root="eval"),
            data_root=str(work_dir / "data"),
            batch_size=settings.batch_size,
            val_batch_size=64,
            num_workers=0,
        ),
        optim=OptimConfig(
            lr=settings.lr,
            weight_decay=0.05,
            base_batch_size=settings.batch_size,
            scale_lr=False,
            clip_grad_norm=1.0,
        ),
        schedule=ScheduleConfig(
            max_epochs=epochs, warmup_iters=settings.lr_warmup_iterations, cosine_begin_epoch=epochs // 2
        ),
        ema=EmaConfig(enabled=True),
        augmentation=final,
        final_augmentation=final,
        final_stage_epochs=0,
        channels_last=False,
        seed=seed,
        val_interval=epochs + 1,
        val_flip_test=False,
        log_interval=10,
    )


def without_validation(config: TrainConfig) -> TrainConfig:
    """``config`` for the engine: the held-out set is scored once, after training, not during it."""
    return replace(config, data=replace(config.data, val=None))


# --- scoring ----------------------------------------------------------------------------------------


def score_run(run_dir: Path, config: TrainConfig, device: str) -> dict[str, float]:
    """Held-out numbers of ``run_dir/last.pth`` (final EMA weights of a model as ``config`` describes)."""
    import torch

    from training.engine import build_model
    from training.localisation import localisation_report

    model = build_model(replace(config, model=replace(config.model, init_checkpoint=None)))
    checkpoint = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    report = localisation_report(model.to(device), config, device=device)
    numbers = report.to_dict()
    return {key: numbers[key] for key in (*METRICS, "mean_pose_error", "median_error_over_mean_pose")}


def mean_pose_errors(config: TrainConfig) -> dict[str, float]:
    """Median body and whole-body errors of the fixed mean-pose guess on the held-out set."""
    from training.engine import load_instances
    from training.localisation import mean_pose_guess, median_errors

    instances = load_instances(config.data.val, config.data.data_root, config.model.metadata)
    return median_errors(mean_pose_guess(instances), instances)


def finished_run(
    run_dir: Path, config: TrainConfig, settings: StudySettings, summary, started: float
) -> dict:
    """A finished run's result: its held-out numbers, iterations trained and seconds taken."""
    seconds = round(time.perf_counter() - started, 1)
    scores = score_run(run_dir, config, settings.device)
    return {**scores, "iterations": summary.iterations, "seconds": seconds}


def read_result(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_result(path: Path, result: dict) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2))
    temporary.replace(path)
    return result


# --- the steps (each runs in a worker process and returns a JSON-able result) -------------------------


def warmup_step(settings: StudySettings, work_dir: Path, size: str) -> dict:
    """Warm a ``size`` backbone up; below the gate, train on (resumed) ``warmup_extension`` more
    iterations, at most ``warmup_max_extensions`` times. Every check's gate numbers are kept."""
    from training.warmup import run_warmup

    run_dir = work_dir / "warmup" / size
    checks = []
    iterations = settings.warmup_iterations
    started = time.perf_counter()
    for _ in range(settings.warmup_max_extensions + 1):
        config = study_config(settings, work_dir, f"warmup-{size}", size, "coco_body", iterations, 0)
        result = run_warmup(
            config,
            run_dir,
            device=settings.device,
            progress=False,
            min_body_ap=settings.gate_min_body_ap,
            max_error_ratio=settings.gate_max_error_ratio,
        )
        checks.append({"iterations": result.summary.iterations, **result.report.to_dict()})
        print(f"warm-up {size} after {result.summary.iterations} iterations: {result.report.describe()}",
              flush=True)  # fmt: skip
        if result.report.localises:
            break
        iterations += settings.warmup_extension
    return {
        "backbone": str(result.backbone),
        "localises": checks[-1]["localises"],
        "checks": checks,
        "seconds": round(time.perf_counter() - started, 1),
    }


def train_step(settings: StudySettings, run_dir: Path, config: TrainConfig, backbone: str) -> dict:
    """Train ``config`` from the warmed-up ``backbone`` (a fresh head) and score it."""
    from training.engine import train
    from training.warmup import hand_over

    started = time.perf_counter()
    summary = train(
        without_validation(hand_over(config, backbone)), run_dir, device=settings.device, progress=False
    )
    return finished_run(run_dir, config, settings, summary, started)


def teacher_config(settings: StudySettings, work_dir: Path, part: str, iterations: int) -> TrainConfig:
    return study_config(
        settings, work_dir, f"teacher-{part}", settings.teacher_size, PARTS[part], iterations,
        settings.teacher_seed,
    )  # fmt: skip


def student_config(settings: StudySettings, work_dir: Path, part: str, name: str, seed: int) -> TrainConfig:
    iterations = settings.stage2_iterations if name == "stage1_2" else settings.student_iterations
    return study_config(
        settings, work_dir, f"{name}-{part}", settings.student_size, PARTS[part], iterations, seed
    )


def preconditions(settings: StudySettings, teacher: dict, alone: list[dict]) -> dict[str, float | bool]:
    """Protocol check: the teacher localises (error ratio and AP50) and the teacher-student gap in
    body AP exceeds the sample std of "student alone" over the seeds."""
    alone_ap = [run["body_ap"] for run in alone]
    spread = statistics.stdev(alone_ap) if len(alone_ap) > 1 else 0.0
    gap = teacher["body_ap"] - statistics.fmean(alone_ap)
    teacher_localises = (
        teacher["median_error_over_mean_pose"] <= settings.max_teacher_error_ratio
        and teacher["body_ap50"] >= settings.min_teacher_ap50
    )
    return {
        "teacher_error_over_mean_pose": teacher["median_error_over_mean_pose"],
        "teacher_body_ap50": teacher["body_ap50"],
        "teacher_localises": teacher_localises,
        "gap": gap,
        "student_alone_std": spread,
        "gap_exceeds_spread": gap > spread,
        "hold": teacher_localises and gap > spread,
    }


def preconditions_step(settings: StudySettings, work_dir: Path, part: str, backbone: str) -> dict:
    """Check the preconditions; if they fail, train the teacher on (resumed, once) and check again.

    Returns every check and the teacher checkpoint that stage 1 distils from (``None``: no comparison).
    """
    part_dir = work_dir / part
    teacher = json.loads((part_dir / "teacher" / RESULT_NAME).read_text())
    alone = [
        json.loads((part_dir / f"seed{s}" / "student_alone" / RESULT_NAME).read_text())
        for s in settings.seeds
    ]
    checks = [{"teacher_iterations": teacher["iterations"], **preconditions(settings, teacher, alone)}]
    checkpoint = part_dir / "teacher" / "last.pth"
    if not checks[-1]["hold"]:
        longer = part_dir / "teacher_extended"
        if not (longer / RESULT_NAME).exists():
            longer.mkdir(parents=True, exist_ok=True)
            if not (longer / "last.pth").exists():  # resume from the teacher, or from where it stopped
                shutil.copy2(checkpoint, longer / "last.pth")
            iterations = settings.teacher_iterations + settings.teacher_extension
            config = teacher_config(settings, work_dir, part, iterations)
            write_result(longer / RESULT_NAME, train_step(settings, longer, config, backbone))
        extended = json.loads((longer / RESULT_NAME).read_text())
        checks.append(
            {"teacher_iterations": extended["iterations"], **preconditions(settings, extended, alone)}
        )
        checkpoint = longer / "last.pth"
    return {
        "checks": checks,
        "hold": checks[-1]["hold"],
        "teacher": str(checkpoint) if checks[-1]["hold"] else None,
    }


def stage1_step(
    settings: StudySettings, work_dir: Path, part: str, seed: int, teacher: str, backbone: str
) -> dict:
    """Stage 1 from the same start as "student alone" (warmed-up backbone, fresh head), teacher frozen."""
    from training.distill import Stage1Config, TeacherConfig, run_stage
    from training.warmup import hand_over

    run_dir = work_dir / part / f"seed{seed}" / "stage1"
    config = student_config(settings, work_dir, part, "stage1", seed)
    stage = Stage1Config(
        train=without_validation(hand_over(config, backbone)),
        teacher=TeacherConfig(checkpoint=teacher, size=settings.teacher_size),
    )
    started = time.perf_counter()
    summary = run_stage(stage, run_dir, device=settings.device, progress=False)
    return finished_run(run_dir, config, settings, summary, started)


def stage2_step(settings: StudySettings, work_dir: Path, part: str, seed: int) -> dict:
    """Stage 2: the stage-1 model of ``seed`` as teacher, its backbone frozen, a new head from scratch."""
    from training.distill import Stage2Config, TeacherConfig, run_stage

    seed_dir = work_dir / part / f"seed{seed}"
    config = student_config(settings, work_dir, part, "stage1_2", seed)
    stage = Stage2Config(
        train=without_validation(config),
        teacher=TeacherConfig(checkpoint=str(seed_dir / "stage1" / "last.pth"), size=settings.student_size),
        head_init="scratch",
    )
    started = time.perf_counter()
    summary = run_stage(stage, seed_dir / "stage1_2", device=settings.device, progress=False)
    return finished_run(seed_dir / "stage1_2", config, settings, summary, started)


# --- the graph --------------------------------------------------------------------------------------


@dataclass
class Step:
    """One run of the study: ``run(results)`` gets the results of ``needs`` (by name) and returns its own."""

    name: str
    needs: tuple[str, ...]
    result_path: Path
    run: Callable[[dict[str, dict]], tuple[Callable, tuple]]
    ready_if: Callable[[dict[str, dict]], str | None] = field(default=lambda results: None)


def study_steps(settings: StudySettings, work_dir: Path) -> list[Step]:
    """Every step in priority order (part A before part B)."""
    s, t = settings.teacher_size, settings.student_size
    steps = [
        Step(f"warmup/{size}", (), work_dir / "warmup" / size / "study.json",
             lambda results, size=size: (warmup_step, (settings, work_dir, size)))
        for size in (t, s)
    ]  # fmt: skip

    def warmed(size: str) -> Callable[[dict[str, dict]], str | None]:
        def check(results: dict[str, dict]) -> str | None:
            if not results[f"warmup/{size}"]["localises"]:
                return f"the RTMPose-{size} backbone failed the warm-up gate (the study stops there)"
            return None

        return check

    for part in settings.parts:
        part_dir = work_dir / part
        steps.append(Step(
            f"{part}/teacher", (f"warmup/{s}",), part_dir / "teacher" / RESULT_NAME,
            lambda results, part=part: (train_step, (
                settings, (work_dir / part) / "teacher",
                teacher_config(settings, work_dir, part, settings.teacher_iterations),
                results[f"warmup/{s}"]["backbone"],
            )),
            warmed(s),
        ))  # fmt: skip
        for seed in settings.seeds:
            steps.append(Step(
                f"{part}/seed{seed}/student_alone", (f"warmup/{t}",),
                part_dir / f"seed{seed}" / "student_alone" / RESULT_NAME,
                lambda results, part=part, seed=seed: (train_step, (
                    settings, (work_dir / part) / f"seed{seed}" / "student_alone",
                    student_config(settings, work_dir, part, "student_alone", seed),
                    results[f"warmup/{t}"]["backbone"],
                )),
                warmed(t),
            ))  # fmt: skip
        alone = tuple(f"{part}/seed{seed}/student_alone" for seed in settings.seeds)
        steps.append(Step(
            f"{part}/preconditions", (f"{part}/teacher", *alone, f"warmup/{s}"),
            part_dir / "preconditions.json",
            lambda results, part=part: (preconditions_step, (
                settings, work_dir, part, results[f"warmup/{s}"]["backbone"],
            )),
        ))  # fmt: skip

        def holds(results: dict[str, dict], part: str = part) -> str | None:
            if not results[f"{part}/preconditions"]["hold"]:
                return "the preconditions failed after the teacher's extension: no comparison is made"
            return None

        for seed in settings.seeds:
            steps.append(Step(
                f"{part}/seed{seed}/stage1", (f"{part}/preconditions", f"warmup/{t}"),
                part_dir / f"seed{seed}" / "stage1" / RESULT_NAME,
                lambda results, part=part, seed=seed: (stage1_step, (
                    settings, work_dir, part, seed, results[f"{part}/preconditions"]["teacher"],
                    results[f"warmup/{t}"]["backbone"],
                )),
                holds,
            ))  # fmt: skip
            steps.append(Step(
                f"{part}/seed{seed}/stage1_2", (f"{part}/seed{seed}/stage1",),
                part_dir / f"seed{seed}" / "stage1_2" / RESULT_NAME,
                lambda results, part=part, seed=seed: (stage2_step, (settings, work_dir, part, seed)),
            ))  # fmt: skip
    return steps


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_and_store(function: Callable, arguments: tuple, result_path: Path) -> dict:
    return write_result(result_path, function(*arguments))


def run_graph(steps: list[Step], workers: int, threads: int, on_result: Callable[[dict, dict], None]) -> dict:
    """Run ``steps`` on ``workers`` processes; finished results (files) are reused.

    Returns ``{"results": ..., "skipped": {name: reason}}``; ``on_result`` is called after each step.
    """
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for step in steps:
        stored = read_result(step.result_path)
        if stored is not None:
            results[step.name] = stored
    pending = [step for step in steps if step.name not in results]
    running: dict[Future, Step] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        while pending or running:
            for step in list(pending):
                if len(running) >= workers:
                    break
                missing = [need for need in step.needs if need in skipped]
                if missing:
                    skipped[step.name] = f"needs {missing[0]}, which did not run"
                    pending.remove(step)
                elif all(need in results for need in step.needs):
                    pending.remove(step)
                    reason = step.ready_if(results)
                    if reason:
                        skipped[step.name] = reason
                        continue
                    function, arguments = step.run(results)
                    print(f"start {step.name}", flush=True)
                    running[pool.submit(_run_and_store, function, arguments, step.result_path)] = step
            if not running:
                if pending and not any(need in skipped for step in pending for need in step.needs):
                    raise RuntimeError(f"steps wait for missing results: {[step.name for step in pending]}")
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                results[step.name] = future.result()
                print(f"done {step.name}: {json.dumps(results[step.name])[:400]}", flush=True)
                on_result(results, skipped)
    return {"results": results, "skipped": skipped}


# --- the summary ------------------------------------------------------------------------------------


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict:
    """Per arm and metric: mean, sample std (ddof 1; NaN for a single run) and the runs' values.

    ``runs`` maps an arm to its runs' metrics in seed order (the teacher has one run).
    """
    summary = {}
    for arm in ARMS:
        if not runs.get(arm):
            continue
        entry = {}
        for metric in METRICS:
            values = [run[metric] for run in runs[arm]]
            entry[metric] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
                "per_seed": values,
            }
        entry["seconds_per_seed"] = [run["seconds"] for run in runs[arm]]
        summary[arm] = entry
    return summary


def compare(summary: dict, better: str, worse: str, metric: str = "body_ap") -> str:
    """The protocol's reading of "``better`` beats ``worse``" on mean ``metric`` (higher is better)."""
    if better not in summary or worse not in summary:
        return "not run"
    first, second = summary[better][metric], summary[worse][metric]
    difference = first["mean"] - second["mean"]
    bar = max(first["std"], second["std"])
    if abs(difference) <= bar:
        return f"not distinguishable ({difference:+.4f}, larger std {bar:.4f})"
    return f"{'higher' if difference > 0 else 'lower'} by {abs(difference):.4f} (larger std {bar:.4f})"


def _spread(std: float) -> str:
    return "(one run)" if std != std else f"+- {std:.4f}"


def markdown_table(summary: dict) -> str:
    """Body AP, AP50 (higher is better) and median errors (lower is better): mean +- std, per seed."""
    lines = [
        "| arm | body AP | per seed | body AP50 | per seed | body error | per seed "
        "| whole-body error | per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        if arm not in summary:
            continue
        cells = [arm]
        for metric in METRICS:
            stats = summary[arm][metric]
            cells.append(f"{stats['mean']:.4f} {_spread(stats['std'])}")
            cells.append(", ".join(f"{v:.4f}" for v in stats["per_seed"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def part_runs(
    results: dict[str, dict], work_dir: Path, part: str, seeds: tuple[int, ...]
) -> dict[str, list[dict]]:
    """The finished runs of ``part`` by arm (the teacher that stage 1 distilled from, if extended)."""
    teacher = results.get(f"{part}/teacher")
    checks = (results.get(f"{part}/preconditions") or {}).get("checks", [])
    if len(checks) > 1:
        teacher = read_result(work_dir / part / "teacher_extended" / RESULT_NAME)
    runs = {"teacher": [teacher] if teacher else []}
    for arm in STUDENT_ARMS:
        runs[arm] = [
            results[f"{part}/seed{seed}/{arm}"] for seed in seeds if f"{part}/seed{seed}/{arm}" in results
        ]
    return runs


def write_summary(work_dir: Path, settings: StudySettings, outcome: dict) -> str:
    """``summary.json`` and ``summary.md`` of the steps finished so far; returns the Markdown."""
    results, skipped = outcome["results"], outcome["skipped"]
    document: dict = {"settings": asdict(settings), "warmups": {}, "parts": {}, "skipped": skipped}
    text = ["# Distillation study, protocol version 3\n"]
    for name in sorted(key for key in results if key.startswith("warmup/")):
        document["warmups"][name] = results[name]
        text.append(f"## {name}\n")
        for check in results[name]["checks"]:
            text.append(
                f"- after {check['iterations']} iterations: body AP {check['body_ap']:.4f}, AP50 "
                f"{check['body_ap50']:.4f}, error {check['median_error_over_mean_pose']:.3f} x the mean "
                f"pose's, gate {'passed' if check['localises'] else 'failed'}"
            )
        text.append("")
    for part in settings.parts:
        config = teacher_config(settings, work_dir, part, settings.teacher_iterations)
        baseline = mean_pose_errors(config) if (work_dir / "data" / "eval").exists() else {}
        summary = summarise(part_runs(results, work_dir, part, settings.seeds))
        verdicts = {
            "stage1_vs_student_alone": compare(summary, "stage1", "student_alone"),
            "stage1_2_vs_stage1": compare(summary, "stage1_2", "stage1"),
        }
        precondition = results.get(f"{part}/preconditions")
        document["parts"][part] = {
            "keypoints": PARTS[part], "arms": summary, "preconditions": precondition,
            "mean_pose_error": baseline, "verdicts": verdicts,
        }  # fmt: skip
        text.append(f"## Part {part} ({PARTS[part]})\n")
        for index, check in enumerate((precondition or {}).get("checks", []), 1):
            text.append(f"- precondition check {index}: {json.dumps(check)}")
        text.append("")
        text.append(markdown_table(summary))
        if baseline:
            text.append(
                f"Fixed mean pose in the box (no model): body error {baseline['body_error']:.4f}, "
                f"whole-body error {baseline['wholebody_error']:.4f}.\n"
            )
        text.extend(f"- {key}: {value}" for key, value in verdicts.items())
        text.append("")
    if skipped:
        text.append("## Not run\n")
        text.extend(f"- {name}: {reason}" for name, reason in skipped.items())
    (work_dir / "summary.json").write_text(json.dumps(document, indent=2))
    markdown = "\n".join(text) + "\n"
    (work_dir / "summary.md").write_text(markdown)
    return markdown


def parse_args(argv: list[str] | None = None) -> tuple[Path, StudySettings, int]:
    defaults = StudySettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="data, runs and the summary go here")
    parser.add_argument("--parts", nargs="+", default=list(defaults.parts), choices=tuple(PARTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--workers", type=int, default=2, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads per worker")
    parser.add_argument("--device", default=defaults.device, help="where the runs train: cpu, cuda or cuda:N")
    smoke = parser.add_argument_group("scale (smoke checks only; not the protocol)")
    for name in ("train_images", "eval_images", "warmup_iterations", "warmup_extension", "teacher_iterations",
                 "teacher_extension", "student_iterations", "stage2_iterations", "batch_size"):  # fmt: skip
        smoke.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("gate_min_body_ap", "gate_max_error_ratio", "min_teacher_ap50", "max_teacher_error_ratio"):
        smoke.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    values = {name: getattr(args, name) for name in vars(args) if hasattr(defaults, name)}
    settings = replace(defaults, **{**values, "parts": tuple(args.parts), "seeds": tuple(args.seeds)})
    return args.work_dir, settings, args.workers


def main(argv: list[str] | None = None) -> int:
    work_dir, settings, workers = parse_args(argv)
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    make_data(work_dir / "data", settings.train_images, settings.eval_images, settings.image_size)
    steps = study_steps(settings, work_dir)
    outcome = run_graph(
        steps, workers, settings.threads,
        lambda results, skipped: write_summary(work_dir, settings, {"results": results, "skipped": skipped}),
    )  # fmt: skip
    print(write_summary(work_dir, settings, outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
