"""Side-by-side benchmark: every tool in its own worker process, alternating runs, medians.

For one configuration (a detector file, a pose file, optional fixed boxes) the harness starts
one worker per tool (sequentially, so model loading never overlaps), lets each process every
image once untimed (warm-up; its outputs are saved for the identity checks), then runs
``rounds`` timed passes, rotating the order of the tools each round so that slow drifts of the
shared machine hit every tool alike. Only one worker computes at a time; the others wait on
their pipe. Each worker reports per-image end-to-end and per-stage seconds and, when it
quits, its own peak RSS. A process's peak RSS varies by up to ~100 MiB from one start to the
next (where the allocator happens to place the model loader's buffers), so each tool's peak is
the median over that worker and ``memory_repeats`` more fresh processes that load the models and
make one pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
ALTERNATIVES = BENCHMARKS / "alternatives"
RUNNER_SCRIPTS = {
    "reference": ALTERNATIVES / "reference_loop.py",
    "rtmlib": ALTERNATIVES / "rtmlib_runner.py",
    "easy_dwpose": ALTERNATIVES / "easy_dwpose_runner.py",
}
STAGES = ("resize", "detect", "crop", "pose", "decode", "render", "other")


@dataclass(frozen=True)
class ToolRun:
    """One tool with one pair of model files and options."""

    key: str
    label: str
    runner: str  # "ours", "reference", "rtmlib" or "easy_dwpose"
    det_model: Path
    pose_model: Path
    options: dict = field(default_factory=dict)
    note: str = ""


@dataclass
class Configuration:
    key: str
    title: str
    description: str
    tools: list[ToolRun]
    fixed_boxes: dict[str, list[list[float]]] | None = None


@dataclass
class ToolResult:
    tool: ToolRun
    load_s: float = 0.0
    peak_rss_samples_mib: list[float] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    persons: list[int] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)  # one worker reply per timed round
    networks: dict | None = None
    save_dir: Path | None = None

    @property
    def peak_rss_mib(self) -> float:
        """Median peak RSS over the tool's processes."""
        return float(np.median(self.peak_rss_samples_mib)) if self.peak_rss_samples_mib else float("nan")

    @property
    def pass_seconds(self) -> list[float]:
        return [float(np.sum(r["e2e_s"])) for r in self.rounds]

    @property
    def images_per_second(self) -> float:
        return len(self.persons) / float(np.median(self.pass_seconds))

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest images/s over the rounds."""
        rates = [len(self.persons) / s for s in self.pass_seconds]
        return min(rates), max(rates)

    @property
    def network_share(self) -> float:
        """End-to-end time over the time spent inside the two networks' ``run`` calls, in the same
        passes (median over the rounds of the per-pass ratio)."""
        ratios = [
            np.sum(r["e2e_s"]) / np.sum(r["network_s"]) for r in self.rounds if np.sum(r["network_s"]) > 0
        ]
        return float(np.median(ratios)) if ratios else float("nan")

    def stage_ms_per_image(self) -> dict[str, float]:
        """Per stage: median over rounds of the pass total, divided by the number of images."""
        count = len(self.persons)
        return {
            stage: 1000.0 * float(np.median([np.sum(r["stages_s"][stage]) for r in self.rounds])) / count
            for stage in STAGES
        }

    def median_image_seconds(self) -> np.ndarray:
        """Per image: the median end-to-end seconds over the rounds."""
        return np.median(np.array([r["e2e_s"] for r in self.rounds]), axis=0)


class Worker:
    """One tool's process, driven over JSON lines on its stdin/stdout."""

    def __init__(self, tool: ToolRun, spec: dict, python: Path, log_dir: Path) -> None:
        if tool.runner == "ours":
            command = [sys.executable, "-m", "benchmarks.ours_runner"]
        else:
            command = [str(python), str(RUNNER_SCRIPTS[tool.runner])]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.tool = tool
        self.log_path = log_dir / f"{tool.key}.log"
        self._log = self.log_path.open("w")
        environment = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=environment,
        )
        self.ready = self.request(spec)

    def request(self, message: dict) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(
                f"benchmark worker {self.tool.key} stopped (exit code {self.process.returncode}); "
                f"its log:\n{self.log_path.read_text()[-3000:]}"
            )
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"benchmark worker {self.tool.key}: {reply['error']}")
        return reply

    def close(self) -> dict:
        reply = self.request({"cmd": "quit"})
        self.process.wait(timeout=60)
        self._log.close()
        return reply

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def run_configuration(
    configuration: Configuration,
    images: list[Path],
    rounds: int,
    alt_python: Path,
    work_dir: Path,
    network_repeats: int = 3,
    memory_repeats: int = 2,
    log=print,
) -> dict[str, ToolResult]:
    """Warm-up pass (outputs saved), ``rounds`` alternating timed passes, network timings, RSS."""
    results: dict[str, ToolResult] = {}
    workers: dict[str, Worker] = {}
    log_dir = work_dir / "logs" / configuration.key

    def worker_spec(tool: ToolRun, save_dir: Path) -> dict:
        return {
            "det_model": str(tool.det_model),
            "pose_model": str(tool.pose_model),
            "images": [str(p) for p in images],
            "detect_resolution": 512,
            "fixed_boxes": configuration.fixed_boxes,
            "options": tool.options,
            "save_dir": str(save_dir),
        }

    try:
        for tool in configuration.tools:
            save_dir = work_dir / "outputs" / configuration.key / tool.key
            spec = worker_spec(tool, save_dir)
            log(f"  [{configuration.key}] starting {tool.key}")
            worker = Worker(tool, spec, alt_python, log_dir)
            workers[tool.key] = worker
            results[tool.key] = ToolResult(
                tool, load_s=worker.ready["load_s"], versions=worker.ready["versions"], save_dir=save_dir
            )
        for key, worker in workers.items():
            warm = worker.request({"cmd": "run", "save": True})
            results[key].persons = warm["persons"]
            log(
                f"  [{configuration.key}] warm-up {key}: {sum(warm['e2e_s']):.2f} s, "
                f"persons {warm['persons']}"
            )
        keys = list(workers)
        for round_index in range(rounds):
            shift = round_index % len(keys)
            for key in keys[shift:] + keys[:shift]:
                reply = workers[key].request({"cmd": "run"})
                results[key].rounds.append(reply)
            log(
                f"  [{configuration.key}] round {round_index + 1}/{rounds}: "
                + ", ".join(f"{k} {sum(results[k].rounds[-1]['e2e_s']):.2f}s" for k in keys)
            )
        for key, worker in workers.items():
            results[key].peak_rss_samples_mib.append(worker.request({"cmd": "rss"})["peak_rss_mib"])
            if results[key].tool.options.get("measure_networks"):
                results[key].networks = worker.request({"cmd": "networks", "repeats": network_repeats})
            worker.close()
    finally:
        for worker in workers.values():
            worker.kill()
    for repeat in range(memory_repeats):
        for key in keys[repeat % len(keys) :] + keys[: repeat % len(keys)]:
            tool = results[key].tool
            fresh = Worker(tool, worker_spec(tool, work_dir / "outputs" / "memory"), alt_python, log_dir)
            try:
                fresh.request({"cmd": "run"})
                results[key].peak_rss_samples_mib.append(fresh.request({"cmd": "rss"})["peak_rss_mib"])
                fresh.close()
            finally:
                fresh.kill()
        log(f"  [{configuration.key}] peak RSS, fresh processes {repeat + 1}/{memory_repeats}")
    return results


def load_output(result: ToolResult, image: Path) -> dict[str, np.ndarray]:
    assert result.save_dir is not None
    with np.load(result.save_dir / f"{image.stem}.npz") as data:
        return {name: data[name] for name in data.files}


@dataclass
class Comparison:
    """How one tool's outputs compare with another's on every image."""

    same_persons: bool
    keypoints_identical: bool
    scores_identical: bool
    maps_identical: bool | None
    max_keypoint_difference: float
    median_keypoint_difference: float


def compare_outputs(
    first: ToolResult, second: ToolResult, images: list[Path], compare_maps: bool = True
) -> Comparison:
    same_persons = first.persons == second.persons
    keypoints_identical = scores_identical = same_persons
    maps_identical: bool | None = True if compare_maps else None
    differences: list[np.ndarray] = []
    for image in images:
        a, b = load_output(first, image), load_output(second, image)
        if a["keypoints"].shape != b["keypoints"].shape:
            keypoints_identical = scores_identical = False
            if compare_maps:
                maps_identical = False
            continue
        keypoints_identical &= bool(np.array_equal(a["keypoints"], b["keypoints"]))
        scores_identical &= bool(np.array_equal(a["scores"], b["scores"]))
        differences.append(np.linalg.norm(a["keypoints"] - b["keypoints"], axis=-1).ravel())
        if compare_maps:
            maps_identical = bool(maps_identical) and a["control_map"].shape == b["control_map"].shape
            maps_identical = maps_identical and bool(np.array_equal(a["control_map"], b["control_map"]))
    flat = np.concatenate(differences) if differences else np.array([np.nan])
    return Comparison(
        same_persons,
        keypoints_identical,
        scores_identical,
        maps_identical,
        float(np.max(flat)) if flat.size else float("nan"),
        float(np.median(flat)) if flat.size else float("nan"),
    )


def timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
