"""GPU benchmark: the torch backend with fp16 and batched persons against a per-person fp32 loop.

Run on a machine with a CUDA build of torch (the project's own environment; no onnxruntime-gpu
needed)::

    python -m benchmarks.gpu                  # writes benchmarks/results_gpu.md

Both pipelines are :class:`~dwpose_ctrl.detector.DWposeDetector` with ``backend="torch"`` on the
same random-weight official architectures (YOLOX-L 640, DWPose-l 384x288, from
``benchmarks/make_models.py``) and the same images; as in configuration B of
``python -m benchmarks`` the detector network runs in full but reports the persons the real
YOLOX-Nano finds, so both pipelines estimate the same persons:

- *fast*: fp16 weights and activations (SimCC head in fp32), all persons of an image in one batch;
- *baseline*: fp32 and one ``forward`` per person, the structure of the reference annotator.

It also times the pose model alone on a large fp16 batch and reports the fraction of the GPU's
dense fp16 tensor-core peak that it reaches (FLOPs counted by ``torch.utils.flop_counter``).
``--device cpu --pose-size t`` runs the same code paths on a CPU (fp32 only) as a dry run.
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


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_pipeline(det_path: Path, pose_path: Path, device: str, dtype: str, per_person: bool):
    """A torch-backend DWposeDetector whose detector reports fixed boxes (see the module doc)."""
    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.models.backend import load_torch_backend

    detector = DWposeDetector(det_model=det_path, pose_model=pose_path, backend="torch", device=device)
    detector._det_backend = BoxInjectingBackend(load_torch_backend(det_path, "detector", device, dtype))
    pose = load_torch_backend(pose_path, "pose", device, dtype)
    detector._pose_backend = PerPersonBackend(pose) if per_person else pose
    return detector


def time_pipeline(
    detector, images: list[tuple[str, np.ndarray]], boxes: dict, device: str
) -> tuple[float, list]:
    """Seconds for one pass over ``images`` (maps out) and the (N, 133, 2) keypoints of each image."""
    injector = detector._det_backend
    estimate_arrays = type(detector).estimate_arrays
    keypoints: list[np.ndarray] = []

    def keeping(*args, **kwargs):
        poses = estimate_arrays(detector, *args, **kwargs)
        keypoints.extend(pose.keypoints for pose in poses)
        return poses

    detector.estimate_arrays = keeping
    _synchronize(device)
    start = time.perf_counter()
    for name, image in images:
        injector.next_boxes = np.asarray(boxes[name], dtype=np.float64).reshape(-1, 4)
        injector.next_ratio = letterbox_ratio(detection_shape(*image.shape[:2], 512), injector.input_size)
        detector(image, output_type="np")
    _synchronize(device)
    elapsed = time.perf_counter() - start
    del detector.estimate_arrays
    return elapsed, keypoints


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


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (dry run)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed passes per pipeline (default: %(default)s)"
    )
    parser.add_argument("--pose-size", choices=sorted(POSE_MODELS), default="l")
    parser.add_argument("--batch", type=int, default=64, help="batch for the pose-only peak measurement")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense fp16 peak, if not in the table")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results_gpu.md")
    args = parser.parse_args(argv)

    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        parser.error("this torch has no CUDA; run on a GPU machine or pass --device cpu for a dry run")
    fast_dtype = "float16" if on_gpu else "float32"
    det_path = make_models.ensure_model(make_models.YOLOX_L_640)
    pose_path = make_models.ensure_model(POSE_MODELS[args.pose_size])
    from dwpose_ctrl.inputs import to_rgb

    paths = suite.benchmark_images()
    images = [(p.name, to_rgb(p)) for p in paths]
    boxes = suite.reference_boxes(suite.NANO, pose_path, paths)
    fast = build_pipeline(det_path, pose_path, args.device, fast_dtype, per_person=False)
    baseline = build_pipeline(det_path, pose_path, args.device, "float32", per_person=True)
    time_pipeline(fast, images, boxes, args.device)
    time_pipeline(baseline, images, boxes, args.device)
    passes: dict[str, list[float]] = {"fast": [], "baseline": []}
    keypoints: dict[str, list] = {}
    for round_index in range(args.rounds):
        order = [("fast", fast), ("baseline", baseline)]
        for name, pipeline in order if round_index % 2 == 0 else order[::-1]:
            seconds, keypoints[name] = time_pipeline(pipeline, images, boxes, args.device)
            passes[name].append(seconds)
    rates = {name: len(images) / statistics.median(values) for name, values in passes.items()}
    deviation = max(
        (
            float(np.abs(a - b).max())
            for a, b in zip(keypoints["fast"], keypoints["baseline"], strict=True)
            if a.size
        ),
        default=0.0,
    )
    pose = pose_throughput(pose_path, args.device, fast_dtype, args.batch, args.iterations)
    device_name = torch.cuda.get_device_name(args.device) if on_gpu else "CPU (dry run, fp32)"
    peak = args.peak_tflops or (fp16_peak_tflops(device_name) if on_gpu else None)
    persons = sum(len(b) for b in boxes.values())
    lines = [
        f"## GPU: {device_name}",
        "",
        f"Generated by `python -m benchmarks.gpu --device {args.device} --pose-size {args.pose_size}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}. "
        f"{len(images)} images, {persons} persons (boxes of the real YOLOX-Nano), YOLOX-L 640 and "
        f"DWPose-{args.pose_size} with random weights, {args.rounds} alternating passes, medians.",
        "",
        "| pipeline | images/s |",
        "|---|---|",
        f"| torch backend, {fast_dtype}, persons batched | {rates['fast']:.2f} |",
        f"| torch backend, float32, one forward per person (reference structure) | {rates['baseline']:.2f} |",
        "",
        f"Speed-up: {rates['fast'] / rates['baseline']:.1f}x (target >= 10x). Largest keypoint difference "
        f"between the two: {deviation:.2f} px (fp16 vs fp32, random weights).",
        "",
        f"Pose model alone, batch {pose['batch']}, {fast_dtype}: {pose['persons_per_s']:.0f} persons/s, "
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


if __name__ == "__main__":
    main()
