"""Pose-guided generation with FLUX.1-dev and a Flux ControlNet-Union.

photo -> DWposeDetector -> OpenPose map -> FluxControlNetPipeline(control_image=map,
control_mode=4) -> image

    python examples/flux_union_openpose.py --image examples/images/grace_hopper.jpg \
        --prompt "a sea captain, oil painting" --cpu-offload

pose is control mode 4 of InstantX/FLUX.1-dev-Controlnet-Union and
Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro; Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0
has no modes (its card recommends --conditioning-scale 0.9 --control-guidance-end 0.65 for
pose). dwpose_ctrl.pipelines.pose_inputs picks the mode from --controlnet-id and sizes the map
to multiples of 16. FLUX.1-dev is large: bfloat16 (the default on CUDA) halves the memory of
float32, and --cpu-offload keeps only the running model on the GPU.
"""

from __future__ import annotations

import argparse

import example_utils as utils


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/flux_union_openpose")
    utils.add_photo_to_pose_arguments(parser, "grace_hopper.jpg")
    utils.add_pipeline_arguments(
        parser,
        utils.FLUX_MODEL,
        utils.FLUX_UNION_CONTROLNET,
        steps=28,
        guidance_scale=3.5,
        conditioning_scale=0.7,
        cuda_dtype="bfloat16",
    )
    parser.add_argument(
        "--control-guidance-end",
        type=float,
        default=1.0,
        help="fraction of the steps the ControlNet acts on (default: 1.0)",
    )
    utils.add_memory_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = utils.parse_sized_args(parser, argv)
    utils.run_pose_example(
        args,
        "FluxControlNetPipeline",
        "FluxControlNetModel",
        control_guidance_end=args.control_guidance_end,
    )


if __name__ == "__main__":
    utils.run(main)
