"""What every benchmark worker shares: the JSON-lines protocol, image loading, stage timers,
fixed-box injection and peak RSS.

Each tool runs in its own worker process (the alternatives in their own virtual environment),
so this module imports only the standard library, numpy and OpenCV, never dwpose_ctrl.

Protocol (one JSON object per line): the harness writes a setup object, the worker loads its
models and answers ``{"ready": ...}``; then ``{"cmd": "run", "save": bool}`` processes every image
once and answers the per-image end-to-end seconds, per-stage seconds, seconds inside the two
networks' ``run`` calls and person counts; ``{"cmd": "rss"}`` answers the peak RSS so far;
``{"cmd": "networks"}`` (dwpose-ctrl only) times the networks alone on prepared inputs;
``{"cmd": "quit"}`` answers the peak RSS and exits.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import resource
import sys
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

STAGES = ("resize", "detect", "crop", "pose", "decode", "render")


@dataclass
class ToolOutput:
    """What one tool produced for one image: COCO-WholeBody keypoints, their scores, the map."""

    keypoints: np.ndarray  # (N, 133, 2) in detection-image pixels
    scores: np.ndarray  # (N, 133)
    control_map: np.ndarray  # (H, W, 3) uint8


class StageTimer:
    """Accumulates wall time per named stage; ``wrap`` turns a function into a timed one."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.last_result: dict[str, object] = {}

    def wrap(self, stage: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            self.totals[stage] += time.perf_counter() - start
            self.last_result[stage] = result
            return result

        return timed

    @contextlib.contextmanager
    def stage(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[stage] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        totals = dict(self.totals)
        self.totals.clear()
        return totals


def time_session_runs(session, timer: StageTimer) -> None:
    """Count every ``session.run`` of an onnxruntime session (or a backend) as "network" time."""
    session.run = timer.wrap("network", session.run)


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (outside every timed region)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def detection_shape(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(H, W) of the detection image: the short side to ``resolution``, sides to multiples of 64."""
    k = resolution / min(height, width)
    return int(np.round(height * k / 64.0)) * 64, int(np.round(width * k / 64.0)) * 64


def resize_for_detection(image: np.ndarray, resolution: int) -> np.ndarray:
    """The annotator's resize (SPEC section 1), for the tools that do not resize by themselves."""
    height, width = image.shape[:2]
    new_height, new_width = detection_shape(height, width, resolution)
    k = resolution / min(height, width)
    interpolation = cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA
    return cv2.resize(image, (new_width, new_height), interpolation=interpolation)


def encode_yolox_output(
    boxes: np.ndarray, input_hw: tuple[int, int], ratio: float, num_classes: int = 80
) -> np.ndarray:
    """A raw YOLOX output (1, A, 5 + C) that every YOLOX decoder turns back into ``boxes``.

    Box i (xyxy, detection-image pixels) sits on anchor i of the stride-8 grid with objectness 1
    and person score ``0.95 - 0.01 i``; every other anchor scores 0. Used to give a random-weight
    detector the same persons in every tool (the network still runs; only its output is replaced).
    """
    height, width = input_hw
    strides = (8, 16, 32)
    num_anchors = sum((height // s) * (width // s) for s in strides)
    grid_width = width // 8
    output = np.zeros((1, num_anchors, 5 + num_classes), dtype=np.float32)
    for index, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        grid_x, grid_y = index % grid_width, index // grid_width
        center_x, center_y = (x1 + x2) / 2 * ratio, (y1 + y2) / 2 * ratio
        box_w, box_h = max(x2 - x1, 1.0) * ratio, max(y2 - y1, 1.0) * ratio
        output[0, index, :4] = (
            center_x / 8 - grid_x,
            center_y / 8 - grid_y,
            math.log(box_w / 8),
            math.log(box_h / 8),
        )
        output[0, index, 4] = 1.0
        output[0, index, 5] = 0.95 - 0.01 * index
    return output


class BoxInjectingSession:
    """Wraps an onnxruntime detector session: runs the network, then reports fixed boxes.

    ``next_boxes`` and ``next_ratio`` are set by the worker before each image.
    """

    def __init__(self, session) -> None:
        self._session = session
        self.next_boxes: np.ndarray = np.zeros((0, 4))
        self.next_ratio = 1.0

    def __getattr__(self, name):
        return getattr(self._session, name)

    def run(self, output_names, feed, *args, **kwargs):
        outputs = self._session.run(output_names, feed, *args, **kwargs)
        height, width = (int(v) for v in self._session.get_inputs()[0].shape[2:])
        num_classes = outputs[0].shape[-1] - 5
        return [encode_yolox_output(self.next_boxes, (height, width), self.next_ratio, num_classes)]


def letterbox_ratio(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> float:
    return min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])


def install_torch_stub() -> None:
    """A stand-in ``torch`` with only ``no_grad``/``inference_mode`` for oracle packages that import
    torch at module level but run ONNX only (so the alternatives' environment needs no torch)."""
    if "torch" in sys.modules:
        return
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401

        return
    stub = types.ModuleType("torch")
    stub.no_grad = contextlib.nullcontext

    def inference_mode(mode: bool = True):
        def decorate(function):
            return function

        return decorate

    stub.inference_mode = inference_mode
    sys.modules["torch"] = stub


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB.

    Read from ``VmHWM`` in ``/proc/self/status``: Linux keeps ``getrusage().ru_maxrss`` across
    ``execve``, so a worker started by a large parent would report the parent's peak instead of
    its own. ``ru_maxrss`` (KiB on Linux) is the fallback where /proc is missing.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def save_output(directory: Path, name: str, output: ToolOutput) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        directory / f"{Path(name).stem}.npz",
        keypoints=np.asarray(output.keypoints, dtype=np.float64).reshape(-1, 133, 2),
        scores=np.asarray(output.scores, dtype=np.float64).reshape(-1, 133),
        control_map=output.control_map,
    )


class Tool:
    """A tool under test. Subclasses load their models in ``__init__`` and implement ``process``."""

    name = "tool"

    def __init__(self, spec: dict, timer: StageTimer) -> None:
        self.spec = spec
        self.timer = timer

    def set_fixed_boxes(self, boxes: np.ndarray, detection_hw: tuple[int, int]) -> None:
        """Called before each image when the configuration feeds fixed boxes to the pose stage."""
        raise NotImplementedError(f"{self.name} cannot take fixed boxes")

    def process(self, image: np.ndarray) -> ToolOutput:
        raise NotImplementedError


def _run_once(tool: Tool, images: list[tuple[str, np.ndarray]], spec: dict, save: bool) -> dict:
    fixed = spec.get("fixed_boxes")
    resolution = int(spec.get("detect_resolution", 512))
    save_dir = Path(spec["save_dir"]) if save and spec.get("save_dir") else None
    e2e, persons, network = [], [], []
    stages: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "other")}
    for name, image in images:
        if fixed is not None:
            tool.set_fixed_boxes(
                np.asarray(fixed[name], dtype=np.float64).reshape(-1, 4),
                detection_shape(image.shape[0], image.shape[1], resolution),
            )
        tool.timer.take()
        start = time.perf_counter()
        output = tool.process(image)
        elapsed = time.perf_counter() - start
        totals = tool.timer.take()
        e2e.append(elapsed)
        persons.append(int(np.asarray(output.scores).reshape(-1, 133).shape[0]))
        for stage in STAGES:
            stages[stage].append(totals.get(stage, 0.0))
        stages["other"].append(max(elapsed - sum(totals.get(s, 0.0) for s in STAGES), 0.0))
        network.append(totals.get("network", 0.0))
        if save_dir is not None:
            save_output(save_dir, name, output)
    return {"e2e_s": e2e, "stages_s": stages, "network_s": network, "persons": persons}


def serve(tool_factory: Callable[[dict, StageTimer], Tool], stdin: Iterable[str] = sys.stdin) -> None:
    """The worker loop: read the setup line, load the tool, answer commands until ``quit``."""
    global _REPLIES
    # Replies get the original stdout; anything the tools print (Python or C) goes to stderr.
    _REPLIES = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lines = iter(stdin)
    spec = json.loads(next(lines))
    timer = StageTimer()
    start = time.perf_counter()
    tool = tool_factory(spec, timer)
    load_s = time.perf_counter() - start
    images = [(Path(p).name, load_rgb(p)) for p in spec["images"]]
    _reply({"ready": True, "load_s": load_s, "rss_after_load_mib": peak_rss_mib(), "versions": versions()})
    for line in lines:
        command = json.loads(line)
        if command["cmd"] == "run":
            _reply(_run_once(tool, images, spec, bool(command.get("save"))))
        elif command["cmd"] == "networks" and hasattr(tool, "measure_networks"):
            _reply(tool.measure_networks(images, int(command.get("repeats", 3))))
        elif command["cmd"] == "rss":
            _reply({"peak_rss_mib": peak_rss_mib()})
        elif command["cmd"] == "quit":
            _reply({"peak_rss_mib": peak_rss_mib()})
            return
        else:
            _reply({"error": f"unknown command {command['cmd']!r}"})


def versions() -> dict[str, str]:
    import importlib.metadata as metadata

    found = {"python": sys.version.split()[0]}
    for package in ("numpy", "onnxruntime", "opencv-python-headless", "rtmlib", "dwposes", "easy_dwpose"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


_REPLIES = sys.stdout


def _reply(message: dict) -> None:
    _REPLIES.write(json.dumps(message) + "\n")
    _REPLIES.flush()
