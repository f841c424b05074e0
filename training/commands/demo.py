"""Show the trainer learning on a fresh checkout, no data or weights needed.

Makes a synthetic training set (1024 people) and a held-out set (256, another generator seed),
warms up an RTMPose-t backbone with the GAU bypassed (3200 iterations), trains RTMPose-t with the
official RTMCC head on it (800 iterations, the recipe's final-stage augmentation) and scores it on
the held-out people. The last line printed is a JSON object with body_ap, body_ap50,
median_error_over_mean_pose (below 1: better than predicting the same mean pose for everyone)
and the warm-up's gate. About 15-20 minutes on two CPU cores; a GPU (--device cuda) is faster.

Example:
  python -m training demo --work-dir runs/demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "synthetic data -> backbone warm-up -> RTMPose-t: shows the trainer learning (prints JSON)"


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.demo import DemoSettings

    defaults = DemoSettings()
    parser.add_argument("--work-dir", type=Path, required=True, help="data, runs and result.json go here")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--train-images", type=positive_int, default=defaults.train_images, help="smoke runs only"
    )
    parser.add_argument(
        "--eval-images", type=positive_int, default=defaults.eval_images, help="smoke runs only"
    )
    parser.add_argument(
        "--warmup-iterations", type=positive_int, default=defaults.warmup_iterations, help="smoke runs only"
    )
    parser.add_argument(
        "--iterations", type=positive_int, default=defaults.iterations, help="smoke runs only"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from training.demo import DemoSettings, run_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = DemoSettings(
        train_images=args.train_images,
        eval_images=args.eval_images,
        warmup_iterations=args.warmup_iterations,
        iterations=args.iterations,
    )
    print(json.dumps(run_demo(args.work_dir, settings, device=args.device)))
    return 0
