"""Pose-guided generation with SDXL and an openpose SDXL ControlNet, with stick scaling.

SDXL openpose ControlNets such as xinsir's were trained on maps with thicker limbs at large
sizes; the detector's ``stick_scaling=True`` draws them that way (limb half-width 4 times
min(2 + long_side // 1000, 7) from a 500 px long side up; joints keep their size).

    python examples/sdxl_openpose.py --image examples/images/astronaut.png \
        --prompt "a knight in shining armour, castle courtyard" --width 1024 --height 1024

Without --width/--height the result has the map's size (short side --resolution, default 1024).
With them the map is fitted to that size first (--fit pad: keep the aspect, pad with black).
For float16 on a GPU, a float16-safe SDXL VAE avoids black images:
--vae-id madebyollin/sdxl-vae-fp16-fix.
"""

from __future__ import annotations

import argparse

from example_utils import (
    EXAMPLE_IMAGES,
    SDXL_CONTROLNET,
    SDXL_MODEL,
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

from dwpose_ctrl.diffusers_utils import FIT_MODES, fit_control_image, pipeline_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", default=str(EXAMPLE_IMAGES / "astronaut.png"), help="photo with a person")
    parser.add_argument(
        "--resolution", type=positive_int, default=1024, help="short side of the map (default: 1024)"
    )
    parser.add_argument(
        "--width", type=positive_int, help="result width, a multiple of 8 (default: the map's)"
    )
    parser.add_argument(
        "--height", type=positive_int, help="result height, a multiple of 8 (default: the map's)"
    )
    parser.add_argument("--fit", choices=FIT_MODES, default="pad", help="how the map meets --width/--height")
    parser.add_argument(
        "--stick-scaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="thicker limbs for SDXL ControlNets (default: on)",
    )
    parser.add_argument("--vae-id", help="replacement VAE, e.g. madebyollin/sdxl-vae-fp16-fix")
    parser.add_argument("--output-dir", default="outputs/sdxl_openpose")
    add_detector_arguments(parser)
    add_pipeline_arguments(parser, SDXL_MODEL, SDXL_CONTROLNET, steps=30)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.width is None) != (args.height is None):
        parser.error("give both --width and --height, or neither")
    out = output_dir(args.output_dir)
    photo = Image.open(args.image).convert("RGB")

    detector = build_detector(args)
    control = detector(
        photo,
        detect_resolution=args.detect_resolution,
        image_resolution=args.resolution,
        stick_scaling=args.stick_scaling,
    )
    if args.width is None:
        width, height = pipeline_size(control)
    else:
        width, height = args.width, args.height
        control = fit_control_image(control, width, height, mode=args.fit)
    warn_if_empty(control)
    control.save(out / "control.png")

    pipe = load_pipeline(args, sdxl=True)
    (result,) = generate(pipe, args, control, width, height)
    result.save(out / "result.png")
    side_by_side([photo, control, result]).save(out / "comparison.png")
    print(
        f"wrote {out / 'control.png'}, {out / 'result.png'} and {out / 'comparison.png'} ({width}x{height})"
    )


if __name__ == "__main__":
    main()
