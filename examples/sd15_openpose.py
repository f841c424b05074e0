"""Pose-guided generation with Stable Diffusion 1.5 and the openpose ControlNet.

photo -> DWposeDetector -> OpenPose control map -> StableDiffusionControlNetPipeline -> image

    python examples/sd15_openpose.py --image examples/images/grace_hopper.jpg \
        --prompt "an astronaut in a spacesuit, studio portrait"

Writes control.png, result.png and comparison.png (photo | map | result) to --output-dir.
The first run downloads the DWPose models and the diffusers models from the Hugging Face Hub;
local folders work too (--model-id, --controlnet-id, --det-model, --pose-model).
"""

from __future__ import annotations

import argparse

import example_utils as utils
from PIL import Image

from dwpose_ctrl.diffusers_utils import pipeline_size


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/sd15_openpose")
    parser.add_argument(
        "--image", default=str(utils.EXAMPLE_IMAGES / "grace_hopper.jpg"), help="photo with a person"
    )
    utils.add_resolution_argument(parser)
    utils.add_detector_arguments(parser)
    utils.add_pipeline_arguments(parser, utils.SD15_MODEL, utils.SD15_CONTROLNET, steps=20)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = utils.output_dir(args.output_dir)
    photo = Image.open(args.image).convert("RGB")

    control = utils.control_map(args, photo)
    utils.warn_if_empty(control)
    control.save(out / "control.png")

    # The map's sides are already multiples of 64; pipeline_size() also covers other sizes.
    width, height = pipeline_size(control)
    result = utils.generate_result(args, control, width, height, out)
    utils.side_by_side([photo, control, result]).save(out / "comparison.png")
    print(f"wrote {out / 'control.png'}, {out / 'result.png'} and {out / 'comparison.png'}")


if __name__ == "__main__":
    utils.run(main)
