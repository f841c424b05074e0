"""The whole benchmark: models, environments, both configurations, checks, faster modes, report.

``python -m benchmarks`` runs :func:`run_suite` and writes ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import accuracy, environment, harness, make_models

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DWPOSE_CTRL_SHARED", ROOT.parent / "shared"))
ASSETS = SHARED / "assets"
VAL5 = ASSETS / "coco_wholebody_val5"
PORTRAITS = ASSETS / "images"
NANO = ASSETS / "weights" / "yolox_nano.onnx"
WORK = Path(__file__).resolve().parent / ".cache" / "run"
INT8 = make_models.CACHE / "int8"


def benchmark_images() -> list[Path]:
    """The 5 COCO-WholeBody val images (1 to 12 annotated persons) and the 2 portraits."""
    images = sorted(VAL5.glob("*.jpg")) + sorted(
        p for p in PORTRAITS.iterdir() if p.suffix in (".jpg", ".png")
    )
    if not images:
        raise FileNotFoundError(f"no benchmark images under {ASSETS} (set DWPOSE_CTRL_SHARED)")
    return images


def calibration_images() -> list[Path]:
    """Images the int8 models are calibrated on: the portraits only, so val5 stays unseen."""
    return sorted(p for p in PORTRAITS.iterdir() if p.suffix in (".jpg", ".png"))


def ensure_int8(source: Path, detector: Path | None = None, log=print) -> Path:
    """Static int8 copy of ``source`` (cached), calibrated on the portraits."""
    from dwpose_ctrl.quantize import quantize_for_pipeline

    destination = INT8 / f"{source.stem}_int8.onnx"
    if not destination.exists():
        log(f"quantising {source.name} to int8 (static, calibrated on the portraits)")
        quantize_for_pipeline(source, destination, calibration_images(), detector=detector)
    return destination


def reference_boxes(det_model: Path, pose_model: Path, images: list[Path]) -> dict[str, list[list[float]]]:
    """The persons the real YOLOX-Nano finds (reference mode, 512 detection image) per image."""
    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.inputs import to_rgb
    from dwpose_ctrl.resize import resize_to_resolution

    detector = DWposeDetector(det_model=det_model, pose_model=pose_model, mode="reference")
    boxes = {}
    for image in images:
        resized = resize_to_resolution(to_rgb(image), 512)
        boxes[image.name] = detector.detect(resized).boxes.tolist()
    return boxes


@dataclass
class SuiteResults:
    started: str
    machine_before: dict
    machine_after: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    rounds: int = 0
    images: list[Path] = field(default_factory=list)
    models: dict[str, Path] = field(default_factory=dict)
    configurations: list[harness.Configuration] = field(default_factory=list)
    results: dict[str, dict[str, harness.ToolResult]] = field(default_factory=dict)
    comparisons: list[tuple[str, str, str, harness.Comparison]] = field(default_factory=list)
    recalls: dict[str, accuracy.Recall] = field(default_factory=dict)
    deviations: dict[str, accuracy.KeypointDeviation] = field(default_factory=dict)
    alternatives_versions: dict = field(default_factory=dict)
    video: dict | None = None


def _ours(key: str, label: str, det: Path, pose: Path, note: str = "", **options) -> harness.ToolRun:
    return harness.ToolRun(key, label, "ours", det, pose, dict(options), note)


def build_configurations(models: dict[str, Path], boxes: dict, include_alternatives: bool = True):
    """Configuration A (real Nano detector) and B (official YOLOX-L 640, fixed boxes)."""
    nano, l384 = models["nano"], models["rtmpose-l"]
    alternatives_a = [
        harness.ToolRun("reference", "reference annotator loop (dwposes)", "reference", nano, l384),
        harness.ToolRun("rtmlib", "rtmlib Wholebody (score 0.3)", "rtmlib", nano, l384),
    ]
    tools_a = [
        *(alternatives_a if include_alternatives else []),
        _ours("ours", "dwpose-ctrl, default mode", nano, l384, mode="default", measure_networks=True),
        _ours("ours-reference", "dwpose-ctrl, reference mode", nano, l384, mode="reference"),
        _ours(
            "ours-per-person", "dwpose-ctrl, default mode, one person per run", nano, l384, per_person=True
        ),
        _ours(
            "ours-int8",
            "dwpose-ctrl, int8 DWPose-l (float32 Nano)",
            nano,
            models["rtmpose-l-int8"],
            note="faster mode",
        ),
        _ours("ours-m", "dwpose-ctrl, DWPose-m 256x192", nano, models["rtmpose-m"], note="faster mode"),
        _ours("ours-s", "dwpose-ctrl, DWPose-s 256x192", nano, models["rtmpose-s"], note="faster mode"),
        _ours("ours-t", "dwpose-ctrl, DWPose-t 256x192", nano, models["rtmpose-t"], note="faster mode"),
    ]
    yolox_l = models["yolox-l"]
    alternatives_b = [
        harness.ToolRun("reference", "reference annotator loop (dwposes)", "reference", yolox_l, l384),
        harness.ToolRun("rtmlib", "rtmlib Wholebody (score 0.3)", "rtmlib", yolox_l, l384),
        harness.ToolRun("easy_dwpose", "easy_dwpose DWposeDetector", "easy_dwpose", yolox_l, l384),
    ]
    tools_b = [
        *(alternatives_b if include_alternatives else []),
        _ours("ours", "dwpose-ctrl, default mode", yolox_l, l384, mode="default", measure_networks=True),
        _ours("ours-reference", "dwpose-ctrl, reference mode", yolox_l, l384, mode="reference"),
        _ours(
            "ours-int8",
            "dwpose-ctrl, int8 YOLOX-L + int8 RTMPose-l",
            models["yolox-l-int8"],
            models["rtmpose-l-int8"],
            note="faster mode",
        ),
    ]
    return [
        harness.Configuration(
            "A",
            "Real YOLOX-Nano 416 + DWPose-l 384x288 architecture (random weights)",
            "Each tool runs its own detection with the real YOLOX-Nano from `../shared/assets`, so the "
            "persons are real; reference mode and the alternatives feed it RGB (as the annotator does), "
            "our default mode feeds BGR and may find other persons.",
            tools_a,
        ),
        harness.Configuration(
            "B",
            "Official architectures: YOLOX-L 640 + DWPose-l 384x288 (random weights), fixed boxes",
            "Every tool runs the full YOLOX-L network, but its output is replaced by the boxes the real "
            "Nano found (reference mode), so every tool runs the pose model on the same persons.",
            tools_b,
            fixed_boxes=boxes,
        ),
    ]


def prepare_models(log=print) -> dict[str, Path]:
    exports = make_models.ensure_models(log=log)
    models = {
        "nano": NANO,
        "yolox-l": exports[make_models.YOLOX_L_640],
        "rtmpose-l": exports[make_models.RTMPOSE_L_384],
        "rtmpose-m": exports[make_models.RTMPOSE_M_256],
        "rtmpose-s": exports[make_models.RTMPOSE_S_256],
        "rtmpose-t": exports[make_models.RTMPOSE_T_256],
    }
    models["nano-int8"] = ensure_int8(NANO, log=log)
    models["yolox-l-int8"] = ensure_int8(models["yolox-l"], log=log)
    models["rtmpose-l-int8"] = ensure_int8(models["rtmpose-l"], detector=NANO, log=log)
    return models


def measure_detect_every(
    det_model: Path, pose_model: Path, image: Path, boxes: list[list[float]], frames: int, every: int
) -> float:
    """Frames/s of the video path (detection every ``every`` frames, keypoint boxes in between) on
    ``frames`` copies of ``image`` shifted by 2 px per frame; the detector network runs in full
    but reports ``boxes`` (as in configuration B), so a random-weight detector still finds the person."""
    from benchmarks.alternatives.common import letterbox_ratio
    from benchmarks.ours_runner import BoxInjectingBackend
    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.engines.item import VideoPoseTracker
    from dwpose_ctrl.engines.pose import DetectorEstimator
    from dwpose_ctrl.inputs import to_rgb
    from dwpose_ctrl.resize import resize_to_resolution

    rgb = resize_to_resolution(to_rgb(image), 512)
    clip = [np.roll(rgb, 2 * index, axis=1) for index in range(frames)]
    detector = DWposeDetector(det_model=det_model, pose_model=pose_model)
    injector = BoxInjectingBackend(detector.det_backend)
    injector.next_boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    injector.next_ratio = letterbox_ratio(rgb.shape[:2], injector.input_size)
    detector._det_backend = injector
    tracker = VideoPoseTracker(DetectorEstimator(detector), every)
    tracker(0, clip[0], 0.0)
    start = time.perf_counter()
    for index, frame in enumerate(clip):
        tracker(index, frame, index / 25.0)
    return frames / (time.perf_counter() - start)


def run_suite(
    rounds: int = 3,
    include_alternatives: bool = True,
    include_video: bool = True,
    only: tuple[str, ...] = ("A", "B"),
    log=print,
) -> SuiteResults:
    started = time.perf_counter()
    suite = SuiteResults(
        started=harness.timestamp(), machine_before=environment.machine_info(), rounds=rounds
    )
    suite.images = benchmark_images()
    suite.models = prepare_models(log)
    alt_python = environment.alternatives_python(log=log) if include_alternatives else Path("python3")
    boxes = reference_boxes(NANO, suite.models["rtmpose-l"], suite.images)
    suite.configurations = [
        c for c in build_configurations(suite.models, boxes, include_alternatives) if c.key in only
    ]
    for configuration in suite.configurations:
        log(f"configuration {configuration.key}: {configuration.title}")
        results = harness.run_configuration(
            configuration, suite.images, rounds, alt_python, WORK, network_repeats=2, log=log
        )
        suite.results[configuration.key] = results
        for first, second, what, maps in (
            ("ours-reference", "reference", "reference mode vs the reference loop", True),
            ("ours", "ours-per-person", "default mode batched vs one person per run", True),
            ("rtmlib", "reference", "rtmlib vs the reference loop", False),
            ("easy_dwpose", "reference", "easy_dwpose vs the reference loop", False),
        ):
            if first in results and second in results:
                comparison = harness.compare_outputs(results[first], results[second], suite.images, maps)
                suite.comparisons.append((configuration.key, first, second, comparison))
                log(f"  {what}: {comparison}")
        for result in results.values():
            if result.tool.runner != "ours":
                suite.alternatives_versions = result.versions
    for key, results in suite.results.items():
        if "ours-int8" in results and results["ours-int8"].persons == results["ours"].persons:
            fp32, int8 = results["ours"], results["ours-int8"]
            label = f"DWPose-l int8 vs float32, configuration {key} (random weights, same crops)"
            suite.deviations[label] = accuracy.keypoint_deviation(
                [harness.load_output(fp32, image)["keypoints"] for image in suite.images],
                [harness.load_output(int8, image)["keypoints"] for image in suite.images],
            )
    for label, det in (("float32", NANO), ("int8", suite.models["nano-int8"])):
        for mode in ("default", "reference"):
            suite.recalls[f"YOLOX-Nano {label}, {mode} mode"] = accuracy.detector_recall(
                det, suite.models["rtmpose-l"], VAL5, mode
            )
    if include_video:
        portrait = PORTRAITS / "grace_hopper.jpg"
        suite.video = {
            "frames": 12,
            "det_model": "YOLOX-L 640 (random)",
            "pose_model": "DWPose-l 384x288 (random)",
        }
        for every in (1, 4):
            suite.video[every] = measure_detect_every(
                suite.models["yolox-l"], suite.models["rtmpose-l"], portrait, boxes[portrait.name], 12, every
            )
    suite.machine_after = environment.machine_info()
    suite.elapsed_s = time.perf_counter() - started
    return suite
