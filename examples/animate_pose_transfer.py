"""Animate a reference character with the moves of a driving video (AnimateDiff + OpenPose ControlNet).

    python examples/animate_pose_transfer.py --video dance.mp4 --reference character.png \
        --num-frames 16 --prompt "a knight dancing in a castle hall"

Step 1 runs ``dwpose-render`` (its Python entry point, the same as the command line) with
--align-to: the driving poses get the character's proportions and are placed on the reference
image (--align-method segments by default), smoothed over the whole clip without lag, with
dropouts of up to --fill-gaps frames filled. Step 2 feeds every --every-th map, at most
--num-frames of them, to diffusers' AnimateDiffControlNetPipeline as ``conditioning_frames``.
Writes maps/<video name>.mp4, maps/<video name>/NNNNNN.png (+ .json), maps/<video name>.json (the
whole aligned sequence), conditioning.gif, frames/NNNNNN.png and result.gif to --output-dir;
--skip-generation stops after the conditioning frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import example_utils as utils
from PIL import Image

from dwpose_ctrl import cli
from dwpose_ctrl.diffusers_utils import fit_control_image, pipeline_size
from dwpose_ctrl.pipelines import from_pretrained_dtype
from dwpose_ctrl.retarget import METHODS
from dwpose_ctrl.video import open_video

MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/animate_pose_transfer")
    parser.add_argument("--video", required=True, help="driving video (anything PyAV/FFmpeg reads)")
    parser.add_argument(
        "--reference", required=True, help="the character to animate: an image or OpenPose JSON"
    )
    parser.add_argument(
        "--align-method",
        choices=METHODS,
        default="segments",
        help="segments: every limb gets the reference's length; linear: one scale and offset for "
        "the clip; none: the driving poses as they are (default: %(default)s)",
    )
    parser.add_argument("--no-smooth", action="store_true", help="keep the per-frame keypoints as detected")
    parser.add_argument(
        "--fill-gaps", type=int, default=4, help="fill keypoints lost for at most N frames (default: 4)"
    )
    parser.add_argument(
        "--every", type=utils.positive_int, default=1, help="use every N-th frame (default: 1)"
    )
    parser.add_argument(
        "--num-frames", type=utils.positive_int, default=16, help="frames generated (default: 16)"
    )
    parser.add_argument(
        "--skip-generation", action="store_true", help="stop after writing the conditioning frames"
    )
    utils.add_resolution_argument(parser, sizes="the maps and the animation")
    utils.add_detector_arguments(parser, title="pose detector (passed to dwpose-render)")
    utils.add_pipeline_arguments(parser, utils.SD15_MODEL, utils.SD15_CONTROLNET, steps=20)
    parser.add_argument(
        "--motion-adapter-id",
        default=MOTION_ADAPTER,
        help="AnimateDiff motion adapter: Hub id or local folder (default: %(default)s)",
    )
    return parser


def render_aligned_maps(args: argparse.Namespace, maps_dir: Path) -> list[Path]:
    """Run dwpose-render on the driving video aligned to the reference; the map PNGs in frame order."""
    command = [
        args.video,
        "--output", str(maps_dir),
        "--align-to", args.reference, "--align-method", args.align_method,
        "--fill-gaps", str(args.fill_gaps),
        "--frames", "--json", "--quiet", "--overwrite",
        "--detect-resolution", str(args.detect_resolution),
        "--image-resolution", str(args.resolution),
        "--device", args.detector_device,
    ]  # fmt: skip
    for flag, value in (("--det-model", args.det_model), ("--pose-model", args.pose_model)):
        if value:
            command += [flag, value]
    if not args.no_smooth:
        command.append("--smooth")
    status = cli.main(command)
    if status != 0:
        raise SystemExit(f"dwpose-render failed with exit status {status}")
    return sorted((maps_dir / Path(args.video).stem).glob("[0-9]*.png"))


def conditioning_frames(map_paths: list[Path]) -> tuple[list[Image.Image], int, int]:
    """The maps as RGB images fitted to a size the pipeline takes (multiples of 8), and that size."""
    maps = [Image.open(path).convert("RGB") for path in map_paths]
    width, height = pipeline_size(maps[0])
    return fit_control_image(maps, width, height), width, height


def load_animatediff(args: argparse.Namespace):
    """AnimateDiffControlNetPipeline from --model-id, --controlnet-id and --motion-adapter-id."""
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel, MotionAdapter

    device, dtype = utils.pipeline_device_and_dtype(args)
    dtype_option = from_pretrained_dtype(dtype)
    pipe = AnimateDiffControlNetPipeline.from_pretrained(
        args.model_id,
        motion_adapter=MotionAdapter.from_pretrained(args.motion_adapter_id, **dtype_option),
        controlnet=ControlNetModel.from_pretrained(args.controlnet_id, **dtype_option),
        **dtype_option,
    )
    return pipe.to(device)


def animate(pipe, args: argparse.Namespace, frames: list[Image.Image], width: int, height: int):
    """One seeded AnimateDiff run over all conditioning frames; the generated PIL frames."""
    import torch

    result = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        num_frames=len(frames),
        conditioning_frames=frames,
        width=width,
        height=height,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        controlnet_conditioning_scale=args.conditioning_scale,
        generator=torch.Generator(device="cpu").manual_seed(args.seed),
    )
    return result.frames[0]


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = utils.output_dir(args.output_dir)
    map_paths = render_aligned_maps(args, out / "maps")[:: args.every][: args.num_frames]
    if not map_paths:
        raise SystemExit(f"no frames were rendered from {args.video}")
    with open_video(args.video) as (info, _):
        rate = info.average_rate
    frame_ms = round(1000 * args.every / float(rate)) if rate else 100
    frames, width, height = conditioning_frames(map_paths)
    frames[0].save(
        out / "conditioning.gif", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0
    )
    print(f"{len(frames)} aligned conditioning frames ({width}x{height}) in {out / 'conditioning.gif'}")
    if args.skip_generation:
        return
    results = animate(load_animatediff(args), args, frames, width, height)
    frames_dir = utils.output_dir(out / "frames")
    for path, result in zip(map_paths, results, strict=True):
        result.save(frames_dir / path.name)
    results[0].save(out / "result.gif", save_all=True, append_images=results[1:], duration=frame_ms, loop=0)
    print(f"wrote {len(results)} frames to {frames_dir} and {out / 'result.gif'}")


if __name__ == "__main__":
    main()
