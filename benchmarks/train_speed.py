"""Images per second of one RTMPose training step (the engine's ``TrainStep``).

A step is what ``python -m training train`` runs per batch: normalise, forward, SimCC KL loss,
backward, AdamW (no decay on norms/biases), EMA update. Data loading is not included (the
loader runs in worker processes in parallel). Inputs are random crops with labels encoded from
random keypoints, so the numbers do not depend on a dataset.

Example (the figure in benchmarks/results_training.md):
    python benchmarks/train_speed.py --size l --input 256x192 --batch 8 --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dwpose_ctrl.codec import encode_simcc
from training.config import EmaConfig, ModelConfig, OptimConfig, TrainConfig
from training.data.dataset import Batch
from training.engine import TrainStep, default_task, parameter_groups


def random_batch(
    batch_size: int, input_size: tuple[int, int], sigma: tuple[float, float], seed: int = 0
) -> Batch:
    rng = np.random.default_rng(seed)
    height, width = input_size
    images = rng.integers(0, 256, (batch_size, 3, height, width), dtype=np.uint8)
    labels = [
        encode_simcc(rng.uniform(0, [width, height], (133, 2)), np.ones(133), input_size, sigma)
        for _ in range(batch_size)
    ]
    return Batch(
        images=torch.from_numpy(images),
        target_x=torch.from_numpy(np.stack([label.target_x for label in labels])),
        target_y=torch.from_numpy(np.stack([label.target_y for label in labels])),
        weights=torch.from_numpy(np.stack([label.weights for label in labels])),
        indices=torch.arange(batch_size),
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="l", choices=("t", "s", "m", "l", "x"), help="RTMPose size")
    parser.add_argument("--input", default="256x192", help="input HxW")
    parser.add_argument("--batch", type=int, default=8, help="images per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-channels-last", action="store_true", help="NCHW instead of channels-last")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="mixed precision")
    parser.add_argument("--no-ema", action="store_true", help="skip the EMA update")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="plain eager PyTorch as mmpose runs it: NCHW, for-loop AdamW (implies --no-channels-last)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.input.lower().split("x"))
    config = TrainConfig(
        model=ModelConfig(size=args.size, input_size=(height, width)),
        optim=OptimConfig(),
        ema=EmaConfig(enabled=not args.no_ema),
        amp=args.amp,
        channels_last=not (args.no_channels_last or args.baseline),
        compile=args.compile,
    )
    device = torch.device(args.device)
    torch.manual_seed(0)
    task = default_task(config).to(device)
    if config.channels_last:
        task = task.to(memory_format=torch.channels_last)
    task.train()
    step = TrainStep(task, config, device, base_lr=1e-4, distributed=False)
    if args.baseline:
        step.optimizer = torch.optim.AdamW(parameter_groups(task, 0.05), lr=1e-4, foreach=False)
    batch = random_batch(args.batch, (height, width), config.model.label_sigma)
    for _ in range(args.warmup):
        step(batch, 0, 1e-4)
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        step(batch, 0, 1e-4)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    median = float(np.median(times))
    result = {
        "model": f"RTMPose-{args.size} {height}x{width}",
        "batch": args.batch,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "channels_last": config.channels_last,
        "compile": args.compile,
        "baseline": args.baseline,
        "amp": args.amp,
        "ema": not args.no_ema,
        "median_step_s": round(median, 4),
        "images_per_s": round(args.batch / median, 2),
        "best_images_per_s": round(args.batch / min(times), 2),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
