"""Pose-guided generation with Stable Diffusion 3 and InstantX's SD3 pose ControlNet.

photo -> DWposeDetector -> OpenPose map -> StableDiffusion3ControlNetPipeline(control_image=map)
-> image

    python examples/sd3_openpose.py --image examples/images/grace_hopper.jpg \
        --prompt "an astronaut, studio portrait" --cpu-offload

SD3's pipeline passes a tensor map straight to its VAE, so it must hold values in [-1, 1], not
[0, 1] as for SD 1.5/SDXL ControlNets; dwpose_ctrl.pipelines.pose_inputs converts the map
accordingly and sizes it to multiples of 16. Memory: --cpu-offload, --drop-t5 (diffusers allows
SD3 without its T5 encoder), and float16 (the default on CUDA).
"""

from __future__ import annotations

import argparse

import example_utils as utils


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/sd3_openpose")
    utils.add_photo_to_pose_arguments(parser, "grace_hopper.jpg")
    utils.add_pipeline_arguments(
        parser,
        utils.SD3_MODEL,
        utils.SD3_POSE_CONTROLNET,
        steps=28,
        guidance_scale=7.0,
        conditioning_scale=0.7,
    )
    utils.add_memory_arguments(parser)
    parser.add_argument(
        "--drop-t5",
        action="store_true",
        help="load without the T5 text encoder (text_encoder_3=None): about 4.7B parameters less, "
        "prompts are read by the two CLIP encoders only",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = utils.parse_sized_args(parser, argv)
    without_t5 = {"text_encoder_3": None, "tokenizer_3": None} if args.drop_t5 else {}
    utils.run_pose_example(args, "StableDiffusion3ControlNetPipeline", "SD3ControlNetModel", without_t5)


if __name__ == "__main__":
    utils.run(main)
