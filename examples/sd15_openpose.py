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

from example_utils import (
    EXAMPLE_IMAGES,
    SD15_CONTROLNET,
    SD15_MODEL,
    add_detector_arguments,
    add_pipeline_arguments,
    build_detector,
    generate,
    load_pipeline,
    output_dir,
    positive_int,
    side_by_side,
    warn_if_empty,
)
from PIL import Image

from dwpose_ctrl.diffusers_utils import pipeline_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--image", default=str(EXAMPLE_IMAGES / "grace_hopper.jpg"), help="photo with a person"
    )
    parser.add_argument(
        "--resolution",
        type=positive_int,
        default=512,
        help="short side of the map and the result (default: 512)",
    )
    parser.add_argument("--output-dir", default="outputs/sd15_openpose")
    add_detector_arguments(parser)
    add_pipeline_arguments(parser, SD15_MODEL, SD15_CONTROLNET, steps=20)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out = output_dir(args.output_dir)
    photo = Image.open(args.image).convert("RGB")

    detector = build_detector(args)
    control = detector(photo, detect_resolution=args.detect_resolution, image_resolution=args.resolution)
    warn_if_empty(control)
    control.save(out / "control.png")

    # The map's sides are already multiples of 64; pipeline_size() also covers other sizes.
    width, height = pipeline_size(control)
    pipe = load_pipeline(args)
    (result,) = generate(pipe, args, control, width, height)
    result.save(out / "result.png")
    side_by_side([photo, control, result]).save(out / "comparison.png")
    print(f"wrote {out / 'control.png'}, {out / 'result.png'} and {out / 'comparison.png'}")


if __name__ == "__main__":
    main()
