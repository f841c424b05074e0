"""Write a synthetic COCO-WholeBody dataset (images + annotations.json), deterministic per seed.

Example:
  python -m training make-synthetic data/synthetic --num-images 256 --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate a synthetic whole-body dataset in COCO-WholeBody format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", type=Path, help="folder for images/ and annotations.json")
    parser.add_argument("--num-images", type=int, default=64, help="number of images")
    parser.add_argument("--height", type=int, default=256, help="image height")
    parser.add_argument("--width", type=int, default=256, help="image width")
    parser.add_argument("--max-persons", type=int, default=3, help="at most this many figures per image")
    parser.add_argument(
        "--occlusion-probability", type=float, default=0.3, help="chance of an occluder per person"
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same dataset)")


def run(args: argparse.Namespace) -> int:
    from training.data.synthetic import SyntheticConfig, generate_synthetic_dataset

    config = SyntheticConfig(
        num_images=args.num_images,
        image_size=(args.height, args.width),
        max_persons=args.max_persons,
        occlusion_probability=args.occlusion_probability,
        seed=args.seed,
    )
    print(generate_synthetic_dataset(args.output_dir, config))
    return 0
