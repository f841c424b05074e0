"""Throughput of ``dwpose-render`` on a folder against the in-process ``DWposeDetector``.

The same images (the shared COCO-WholeBody val5 photos and portraits, copied ``--copies`` times
into a temporary folder) go through:

* ``in-process``: ``DWposeDetector(...)(image, output_type="np")`` on each decoded photo, nothing
  written (the upper bound a folder renderer can reach with the same runtimes);
* ``render sequential``: the local engine with ``--prefetch 0 --loaders 0`` (read, decode,
  estimate, draw, encode, write one item after another);
* ``render overlapped``: the local engine with its defaults (decoding threads ahead, a writer
  thread behind), the ``dwpose-render`` default;
* optionally the same with ``--json --overlay`` (three outputs from one inference).

Each variant runs ``--rounds`` times in rotating order after one untimed warm-up; the detector's
sessions are created once, before timing (model loading is not throughput). The ratio to the
in-process figure is the goal metric (>= 0.95). Models: the real YOLOX-Nano from ``../shared``
and a random-weight DWPose student (RTMPose-t 256x192 by default) exported by
``benchmarks/make_models.py``; speed does not depend on weight values.

Run: ``python -m benchmarks.render_throughput [--copies 4] [--rounds 3] [--pose-size t]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DWPOSE_CTRL_SHARED", ROOT.parent / "shared")) / "assets"


def make_folder(target: Path, copies: int) -> list[Path]:
    sources = sorted((SHARED / "coco_wholebody_val5").glob("*.jpg")) + sorted((SHARED / "images").iterdir())
    if not sources:
        raise SystemExit(f"no images under {SHARED}; set DWPOSE_CTRL_SHARED")
    paths = []
    for copy in range(copies):
        for source in sources:
            path = target / f"copy{copy}" / source.name
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
            paths.append(path)
    return paths


def in_process(detector, paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
        detector(image, output_type="np")
    return time.perf_counter() - started


def render(estimator, paths_root: Path, out: Path, prefetch: int, loaders: int, extra: bool) -> float:
    from dwpose_ctrl.engines import JobSettings, OutputOptions, render_files

    shutil.rmtree(out, ignore_errors=True)
    job = JobSettings(outputs=OutputOptions(json=extra, overlay=extra))
    started = time.perf_counter()
    report = render_files(
        [str(paths_root)], str(out), lambda: estimator, job, prefetch=prefetch, loaders=loaders
    )
    elapsed = time.perf_counter() - started
    if report.exit_code != 0:
        raise SystemExit(f"dwpose-render failed: {report.summary()}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=4, help="copies of the 7 photos (default: %(default)s)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds per variant (default: %(default)s)"
    )
    parser.add_argument("--pose-size", default="t", choices=("t", "s", "m", "l"), help="DWPose student size")
    parser.add_argument("--det-model", type=Path, default=SHARED / "weights" / "yolox_nano.onnx")
    parser.add_argument(
        "--pose-model", type=Path, help="pose ONNX file (default: random export, see docstring)"
    )
    parser.add_argument("--with-extras", action="store_true", help="also time --json --overlay")
    parser.add_argument("--markdown", type=Path, help="write the table to this file")
    args = parser.parse_args(argv)

    from benchmarks.make_models import (
        RTMPOSE_L_384,
        RTMPOSE_M_256,
        RTMPOSE_S_256,
        RTMPOSE_T_256,
        ensure_model,
    )
    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.engines import DetectorEstimator

    pose_model = args.pose_model or ensure_model(
        {"t": RTMPOSE_T_256, "s": RTMPOSE_S_256, "m": RTMPOSE_M_256, "l": RTMPOSE_L_384}[args.pose_size]
    )
    detector = DWposeDetector(args.det_model, pose_model)
    estimator = DetectorEstimator(detector)
    with tempfile.TemporaryDirectory(prefix="dwpose-bench-") as scratch:
        scratch_path = Path(scratch)
        paths = make_folder(scratch_path / "in", args.copies)
        out = scratch_path / "out"
        variants = {
            "in-process DWposeDetector": lambda: in_process(detector, paths),
            "dwpose-render sequential (prefetch 0)": lambda: render(
                estimator, scratch_path / "in", out, 0, 0, False
            ),
            "dwpose-render overlapped (default)": lambda: render(
                estimator, scratch_path / "in", out, 4, 2, False
            ),
        }
        if args.with_extras:
            variants["dwpose-render overlapped + JSON + overlay"] = lambda: render(
                estimator, scratch_path / "in", out, 4, 2, True
            )
        for run in variants.values():  # warm-up: sessions, caches, page cache
            run()
        times: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                times[name].append(variants[name]())
    count = len(paths)
    baseline = count / statistics.median(times[names[0]])
    lines = [
        f"{count} images (7 photos x {args.copies}), detector {args.det_model.name}, "
        f"pose {Path(pose_model).name}, {os.cpu_count()} CPUs, median of {args.rounds} rounds",
        "",
        "| variant | images/s | vs in-process |",
        "|---|---:|---:|",
    ]
    for name in names:
        rate = count / statistics.median(times[name])
        lines.append(f"| {name} | {rate:.2f} | {rate / baseline:.3f}x |")
    spread = {name: np.ptp(values) / statistics.median(values) for name, values in times.items()}
    lines.append("")
    lines.append(
        "round-to-round spread (max-min over median): " + ", ".join(f"{v:.0%}" for v in spread.values())
    )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
