"""Pose transfer from a video: one control map per frame, then one generated image per map.

    python examples/video_pose_transfer.py --video dance.mp4 --every 2 --max-frames 48 \
        --prompt "a robot dancing in a neon city"

Step 1 runs ``dwpose-render`` (through its Python entry point, the same as the command line)
with --frames --json: a map video, a PNG map and an OpenPose JSON per frame, persons tracked with
stable IDs. Step 2 renders every --every-th map with the same prompt and seed, so the subject
follows the video's moves. Writes maps/<video name>/NNNNNN.png (+ .json), frames/NNNNNN.png and
result.gif to --output-dir.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import example_utils as utils
from PIL import Image

from dwpose_ctrl import cli
from dwpose_ctrl.diffusers_utils import fit_control_image, pipeline_size
from dwpose_ctrl.video import open_video


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/video_pose_transfer")
    parser.add_argument("--video", required=True, help="input video (anything PyAV/FFmpeg reads)")
    parser.add_argument(
        "--every", type=utils.positive_int, default=1, help="generate for every N-th frame (default: 1)"
    )
    parser.add_argument(
        "--max-frames", type=utils.positive_int, default=16, help="at most this many results (default: 16)"
    )
    parser.add_argument(
        "--batch-size", type=utils.positive_int, default=4, help="maps per pipeline call (default: 4)"
    )
    utils.add_resolution_argument(parser, sizes="the maps and the results")
    parser.add_argument(
        "--smooth", action="store_true", help="smooth keypoints over the whole clip (offline, no lag)"
    )
    group = utils.add_detector_arguments(parser, title="pose detector (passed to dwpose-render)")
    group.add_argument(
        "--detect-every",
        type=utils.positive_int,
        default=1,
        help="detect persons every N frames, track between",
    )
    utils.add_pipeline_arguments(parser, utils.SD15_MODEL, utils.SD15_CONTROLNET, steps=20)
    return parser


def render_maps(args: argparse.Namespace, maps_dir: Path) -> list[Path]:
    """Run dwpose-render on the video; the per-frame PNG maps in frame order."""
    command = [
        args.video,
        "--output", str(maps_dir),
        "--frames", "--json", "--quiet", "--overwrite",
        "--detect-resolution", str(args.detect_resolution),
        "--image-resolution", str(args.resolution),
        "--detect-every", str(args.detect_every),
        "--device", args.detector_device,
    ]  # fmt: skip
    for flag, value in (("--det-model", args.det_model), ("--pose-model", args.pose_model)):
        if value:
            command += [flag, value]
    if args.smooth:
        command.append("--smooth")
    status = cli.main(command)
    if status != 0:
        raise SystemExit(f"dwpose-render failed with exit status {status}")
    frames_dir = maps_dir / Path(args.video).stem
    return sorted(frames_dir.glob("[0-9]*.png"))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = utils.output_dir(args.output_dir)
    map_paths = render_maps(args, out / "maps")[:: args.every][: args.max_frames]
    if not map_paths:
        raise SystemExit(f"no frames were rendered from {args.video}")
    print(f"{len(map_paths)} control maps in {map_paths[0].parent}")
    with open_video(args.video) as (info, _):
        rate = info.average_rate
    frame_ms = round(1000 * args.every / float(rate)) if rate else 100

    controls = [Image.open(path).convert("RGB") for path in map_paths]
    width, height = pipeline_size(controls[0])
    controls = fit_control_image(controls, width, height)
    pipe = utils.load_pipeline(args)
    frames_dir = utils.output_dir(out / "frames")
    results: list[Image.Image] = []
    for start in range(0, len(controls), args.batch_size):
        batch = controls[start : start + args.batch_size]
        # The same seed for every batch: the subject changes as little as possible between frames.
        results += utils.generate(pipe, args, batch, width, height)
    for path, result in zip(map_paths, results, strict=True):
        result.save(frames_dir / path.name)
    results[0].save(out / "result.gif", save_all=True, append_images=results[1:], duration=frame_ms, loop=0)
    print(f"wrote {len(results)} frames to {frames_dir} and {out / 'result.gif'}")


if __name__ == "__main__":
    utils.run(main)
