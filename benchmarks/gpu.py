"""GPU benchmark: ``DWposeDetector(device="cuda")`` on the torch backend, fp32 and fp16, batched
against a per-person fp32 loop, for images and for video frames.

Run on a machine with a CUDA build of torch and only the CPU ``onnxruntime`` (no onnxruntime-gpu
needed)::

    python -m benchmarks.gpu                          # writes benchmarks/results_gpu.md
    python -m benchmarks.gpu --device cpu --quick     # a smoke run of the same code on a CPU

The detector is built as a user would build it: ``DWposeDetector(det, pose, device="cuda",
dtype=...)`` with the default backend (``"auto"``, which picks the torch backend on CUDA when
onnxruntime has no CUDA provider); the CPU smoke run names ``backend="torch"``, with
the weights loaded in the asked dtype. The output says which runtime really ran and which
onnxruntime distributions and providers are installed.

Workload: random-weight official architectures (YOLOX-L 640, DWPose-l 384x288, from
``benchmarks/make_models.py``; ``--quick``: the real YOLOX-Nano and DWPose-t 256x192 on the image
with the fewest persons) on frames made from the COCO val image with the most persons, shifted a
little each frame. As in
configuration B of ``python -m benchmarks`` the detector network runs in full but reports the
persons the real YOLOX-Nano finds on that image, so every pipeline estimates the same persons.

- *images/s*: ``detector(frames, output_type="np")`` on ``--batch`` frames per call (one detector
  run and one pose-model run for all their persons), fp32 and fp16;
- *frames/s*: the same frames as a lossless video through ``render_files`` (decode, estimate,
  draw, encode) with ``batch_size=--batch``;
- *baseline*: fp32, one frame per call and one pose ``forward`` per person (the structure of the
  reference annotator), for both. Target: fp16 batched >= 10x the baseline.

It also times the pose model alone on a large batch and reports the fraction of the GPU's dense
fp16 tensor-core peak that it reaches (FLOPs counted by ``torch.utils.flop_counter``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import make_models, suite
from benchmarks.alternatives.common import detection_shape, letterbox_ratio
from benchmarks.ours_runner import BoxInjectingBackend, PerPersonBackend

# Dense (no sparsity) fp16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets.
FP16_PEAK_TFLOPS = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
POSE_MODELS = {
    "l": make_models.RTMPOSE_L_384,
    "m": make_models.RTMPOSE_M_256,
    "s": make_models.RTMPOSE_S_256,
    "t": make_models.RTMPOSE_T_256,
}


def fp16_peak_tflops(device_name: str) -> float | None:
    for key, peak in FP16_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def onnxruntime_distributions() -> dict[str, str]:
    """Installed onnxruntime distributions (name -> version): more than one is a clash."""
    from importlib import metadata

    found = {}
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


class RepeatedBoxesBackend(BoxInjectingBackend):
    """Runs the detector network on the whole batch, then reports the same boxes for every image."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        (encoded,) = super().run(batch)
        return [np.repeat(encoded, batch.shape[0], axis=0)]


def make_detector(det_path: Path, pose_path: Path, device: str, dtype: str, per_person: bool = False):
    """``DWposeDetector(device=..., dtype=...)`` as a user builds it, and a line saying what runs.

    The detector network is wrapped to report fixed boxes (see the module doc); ``per_person``
    makes the pose model run one person at a time.
    """
    from dwpose_ctrl.detector import DWposeDetector

    # On a GPU the default backend ("auto") is what a user gets; on the CPU "auto" means
    # onnxruntime, so the smoke run names the torch backend to exercise the path measured on a GPU.
    backend = "torch" if device == "cpu" else "auto"
    detector = DWposeDetector(det_path, pose_path, device=device, dtype=dtype, backend=backend)
    how = (
        f"DWposeDetector(device={device!r}, dtype={dtype!r}, backend={backend!r}): {detector.runtime_info()}"
    )
    pose = detector.pose_backend
    pose_device, pose_dtype = getattr(pose, "device", "?"), getattr(pose, "dtype", "?")
    how += f"; pose model: {type(pose).__name__} on {pose_device}, {pose_dtype}"
    detector._det_backend = RepeatedBoxesBackend(detector.det_backend)
    if per_person:
        detector._pose_backend = PerPersonBackend(detector.pose_backend)
    return detector, how


def time_images(detector, frames: list[np.ndarray], batch: int, device: str) -> float:
    """Seconds for ``detector(...)`` over all frames, ``batch`` per call (maps out)."""
    _synchronize(device)
    start = time.perf_counter()
    for first in range(0, len(frames), batch):
        detector(frames[first : first + batch], output_type="np")
    _synchronize(device)
    return time.perf_counter() - start


def time_video(detector, video: Path, batch: int, work: Path) -> float:
    """Seconds of ``render_files`` on the video (decode, estimate, draw, encode), ``batch`` frames a call."""
    import shutil

    from dwpose_ctrl.engines import DetectorEstimator, JobSettings, OutputOptions, render_files

    out = work / "maps"
    shutil.rmtree(out, ignore_errors=True)
    job = JobSettings(outputs=OutputOptions(video_codec="ffv1"))
    start = time.perf_counter()
    report = render_files([str(video)], str(out), lambda: DetectorEstimator(detector), job, batch_size=batch)
    elapsed = time.perf_counter() - start
    if report.counts["done"] != 1:
        raise RuntimeError(f"the benchmark video failed: {report.results}")
    return elapsed


def benchmark_frames(
    count: int, pose_path: Path, fewest_persons: bool = False
) -> tuple[list[np.ndarray], np.ndarray, str]:
    """``count`` frames (the val image with the most persons, or the fewest but one, shifted), the
    persons' boxes in its 512-detection-image pixels, and the image's name."""
    from dwpose_ctrl.inputs import to_rgb

    paths = suite.benchmark_images()
    boxes = suite.reference_boxes(suite.NANO, pose_path, paths)
    if fewest_persons:
        name = min((key for key in boxes if boxes[key]), key=lambda key: len(boxes[key]))
    else:
        name = max(boxes, key=lambda key: len(boxes[key]))
    image = to_rgb(next(path for path in paths if path.name == name))
    height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    image = np.ascontiguousarray(image[:height, :width])
    frames = [np.ascontiguousarray(np.roll(image, 2 * index, axis=1)) for index in range(count)]
    return frames, np.asarray(boxes[name], dtype=np.float64).reshape(-1, 4), name


def write_video(frames: list[np.ndarray], path: Path) -> Path:
    from fractions import Fraction

    from dwpose_ctrl.video import VideoWriter

    height, width = frames[0].shape[:2]
    writer = VideoWriter(str(path), "ffv1", "bgr0", width, height, Fraction(1, 25), Fraction(25))
    for index, frame in enumerate(frames):
        writer.write(frame, index)
    writer.close()
    return path


def pose_throughput(pose_path: Path, device: str, dtype: str, batch: int, iterations: int) -> dict:
    """Persons/s of the pose model alone on one large batch, its FLOPs and achieved TFLOP/s."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dwpose_ctrl.models.backend import load_torch_backend

    backend = load_torch_backend(pose_path, "pose", device, dtype)
    height, width = backend.input_size
    tensor = torch.randn(batch, 3, height, width, device=backend.device, dtype=backend.dtype)
    if backend.device != "cpu":
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            backend.model(tensor[:1])
        flops_per_person = counter.get_total_flops()
        for _ in range(3):
            backend.model(tensor)
        _synchronize(backend.device)
        start = time.perf_counter()
        for _ in range(iterations):
            backend.model(tensor)
        _synchronize(backend.device)
        elapsed = time.perf_counter() - start
    persons_per_second = batch * iterations / elapsed
    return {
        "batch": batch,
        "persons_per_s": persons_per_second,
        "gflop_per_person": flops_per_person / 1e9,
        "tflops": persons_per_second * flops_per_person / 1e12,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write the markdown; return the measured rates."""
    import tempfile

    import torch

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (smoke run, fp32 only)")
    parser.add_argument("--quick", action="store_true", help="tiny models, <= 4 frames, 1 round: smoke run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed passes per pipeline (default: %(default)s)"
    )
    parser.add_argument("--frames", type=int, default=64, help="frames per pass (default: %(default)s)")
    parser.add_argument(
        "--batch", type=int, default=16, help="frames per network call (default: %(default)s)"
    )
    parser.add_argument("--pose-size", choices=sorted(POSE_MODELS), default="l")
    parser.add_argument("--pose-batch", type=int, default=64, help="batch for the pose-only peak measurement")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense fp16 peak, if not in the table")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results_gpu.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.frames, args.batch, args.pose_size = 1, min(args.frames, 4), 2, "t"

    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        parser.error("this torch has no CUDA; run on a GPU machine or pass --device cpu for a smoke run")
    dtypes = ["float32", "float16"] if on_gpu else ["float32"]
    det_path = suite.NANO if args.quick else make_models.ensure_model(make_models.YOLOX_L_640)
    pose_path = make_models.ensure_model(POSE_MODELS[args.pose_size])
    frames, boxes, image_name = benchmark_frames(args.frames, pose_path, fewest_persons=args.quick)
    pipelines = {f"{dtype}, batched": (dtype, False, args.batch) for dtype in dtypes}
    pipelines["float32, one frame and one person per call (baseline)"] = ("float32", True, 1)
    detectors, runtime_lines = {}, []
    for name, (dtype, per_person, _) in pipelines.items():
        detectors[name], how = make_detector(det_path, pose_path, args.device, dtype, per_person)
        injector = detectors[name].det_backend
        injector.next_boxes = boxes
        injector.next_ratio = letterbox_ratio(detection_shape(*frames[0].shape[:2], 512), injector.input_size)
        runtime_lines.append(f"- {name}: {how}")
    rates: dict[str, dict[str, float]] = {name: {} for name in pipelines}
    with tempfile.TemporaryDirectory() as work:
        video = write_video(frames, Path(work) / "frames.mkv")
        for name, (_, _, batch) in pipelines.items():  # warm-up
            time_images(detectors[name], frames[: max(batch, 2)], batch, args.device)
        for round_index in range(args.rounds):
            order = list(pipelines.items())
            for name, (_, _, batch) in order if round_index % 2 == 0 else order[::-1]:
                rates[name].setdefault("images", []).append(
                    time_images(detectors[name], frames, batch, args.device)
                )
                rates[name].setdefault("video", []).append(
                    time_video(detectors[name], video, batch, Path(work))
                )
    per_second = {
        name: {kind: len(frames) / statistics.median(seconds) for kind, seconds in measured.items()}
        for name, measured in rates.items()
    }
    baseline = per_second["float32, one frame and one person per call (baseline)"]
    fastest = per_second[f"{dtypes[-1]}, batched"]
    first = frames[0]
    keypoints = {
        dtype: detectors[f"{dtype}, batched"].estimate(first, detect_resolution=512) for dtype in dtypes
    }
    deviation = max(
        (
            float(np.abs(a.keypoints - b.keypoints).max())
            for a, b in zip(keypoints[dtypes[-1]], keypoints["float32"], strict=True)
        ),
        default=0.0,
    )
    device_name = torch.cuda.get_device_name(args.device) if on_gpu else "CPU (smoke run, fp32 only)"
    command = f"python -m benchmarks.gpu --device {args.device}" + (" --quick" if args.quick else "")
    distributions = onnxruntime_distributions()
    import onnxruntime

    lines = [
        f"## GPU: {device_name}",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch "
        f"{torch.__version__}; onnxruntime distributions installed: "
        f"{', '.join(f'{k} {v}' for k, v in distributions.items()) or 'none'} (providers: "
        f"{', '.join(onnxruntime.get_available_providers())}). {len(frames)} frames of {image_name} "
        f"({first.shape[1]}x{first.shape[0]}, {len(boxes)} persons from the real YOLOX-Nano), "
        f"{det_path.name} and {pose_path.name}, {args.rounds} alternating passes, medians.",
        "",
        "What ran:",
        *runtime_lines,
        "",
        "| pipeline | frames per call | images/s | video frames/s |",
        "|---|---|---|---|",
        *(
            f"| {name} | {pipelines[name][2]} | {rate['images']:.2f} | {rate['video']:.2f} |"
            for name, rate in per_second.items()
        ),
        "",
        f"Speed-up of {dtypes[-1]} batched over the baseline: {fastest['images'] / baseline['images']:.1f}x "
        f"(images), {fastest['video'] / baseline['video']:.1f}x (video frames); target >= 10x. Largest "
        f"keypoint difference {dtypes[-1]} vs float32: {deviation:.3f} px (random weights).",
        "",
    ]
    if not args.quick:
        pose = pose_throughput(pose_path, args.device, dtypes[-1], args.pose_batch, args.iterations)
        peak = args.peak_tflops or (fp16_peak_tflops(device_name) if on_gpu else None)
        lines += [
            f"Pose model alone, batch {pose['batch']}, {dtypes[-1]}: {pose['persons_per_s']:.0f} persons/s, "
            f"{pose['gflop_per_person']:.1f} GFLOP per person, {pose['tflops']:.1f} TFLOP/s"
            + (
                f" = {100 * pose['tflops'] / peak:.1f}% of the {peak:.0f} TFLOP/s dense fp16 peak."
                if peak
                else "."
            ),
            "",
        ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return per_second


if __name__ == "__main__":
    main()
