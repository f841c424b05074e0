"""``python -m benchmarks``: run every benchmark and regenerate ``benchmarks/RESULTS.md``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import report, suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Side-by-side speed of dwpose-ctrl, the reference annotator loop, rtmlib and "
        "easy_dwpose on the same images and ONNX files; writes benchmarks/RESULTS.md.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per tool (default: %(default)s)")
    parser.add_argument(
        "--only", default="A,B", help="configurations to run, comma-separated (default: %(default)s)"
    )
    parser.add_argument(
        "--no-alternatives", action="store_true", help="time dwpose-ctrl only (no separate environment)"
    )
    parser.add_argument(
        "--no-video", action="store_true", help="skip the detection-every-N-frames measurement"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=report.BENCHMARKS / "RESULTS.md",
        help="report path (default: %(default)s)",
    )
    parser.add_argument(
        "--refresh-included",
        action="store_true",
        help="only re-include the render, training and distillation sections into the existing "
        "report (no timing)",
    )
    args = parser.parse_args(argv)
    if args.refresh_included:
        print(f"wrote {report.refresh_included_sections(args.output)}")
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results = suite.run_suite(
        rounds=args.rounds,
        include_alternatives=not args.no_alternatives,
        include_video=not args.no_video,
        only=tuple(key.strip() for key in args.only.split(",") if key.strip()),
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    path = report.write_results(results, args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
