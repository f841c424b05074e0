"""Extract UBody video frames with PyAV: videos/<scene>/<video>.mp4 -> images/<scene>/<video>/000001.png.

By default only the frames the annotation files reference are written (every frame with --all).
Example:
  python -m training extract-ubody-frames data/UBody --split train --sample-interval 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "extract UBody video frames (PyAV) for training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="UBody folder with annotations/ and videos/")
    parser.add_argument("--all", action="store_true", help="every frame, not only the annotated ones")
    parser.add_argument(
        "--split", help="only frames of this split's annotations (train or val; default both)"
    )
    parser.add_argument(
        "--sample-interval",
        type=int,
        default=1,
        help="only image ids that are multiples of this (training uses 10)",
    )
    parser.add_argument(
        "--format", default="png", choices=("png", "jpg"), help="image format (png as mmpose's converter)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from training.data.ubody import extract_ubody_frames

    written = extract_ubody_frames(
        args.root, not args.all, args.split, args.sample_interval, args.format, not args.no_progress
    )
    print(f"{written} frames written under {args.root / 'images'}")
    return 0
