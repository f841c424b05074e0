"""Pose-guided generation with SDXL and xinsir's ControlNet-Union (ProMax weights by default).

photo -> DWposeDetector (thick sticks, as xinsir's models were trained) -> OpenPose map ->
StableDiffusionXLControlNetUnionPipeline(control_image=[map], control_mode=[0]) -> image

    python examples/sdxl_union_openpose.py --image examples/images/astronaut.png \
        --prompt "a knight in shining armour, castle courtyard" --width 1024 --height 1024

openpose is control mode 0 of the SDXL Union models; dwpose_ctrl.pipelines.pose_inputs picks it
and passes the map the way the Union pipeline wants it (a list, one entry per condition). In
float16 the stock SDXL VAE can overflow into black images; --dtype bfloat16 avoids that.
Memory: --cpu-offload keeps the models on the CPU between uses.
"""

from __future__ import annotations

import argparse

import example_utils as utils


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/sdxl_union_openpose")
    utils.add_photo_to_pose_arguments(parser, "astronaut.png")
    utils.add_pipeline_arguments(parser, utils.SDXL_MODEL, utils.SDXL_UNION_CONTROLNET, steps=30)
    utils.add_memory_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = utils.parse_sized_args(parser, argv)
    utils.run_pose_example(args, "StableDiffusionXLControlNetUnionPipeline", "ControlNetUnionModel")


if __name__ == "__main__":
    utils.run(main)
