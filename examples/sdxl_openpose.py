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

import example_utils as utils
from PIL import Image

from dwpose_ctrl.diffusers_utils import FIT_MODES, fit_control_image, pipeline_size


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/sdxl_openpose")
    parser.add_argument(
        "--image", default=str(utils.EXAMPLE_IMAGES / "astronaut.png"), help="photo with a person"
    )
    utils.add_resolution_argument(parser, default=1024, sizes="the map")
    parser.add_argument(
        "--width", type=utils.positive_int, help="result width, a multiple of 8 (default: the map's)"
    )
    parser.add_argument(
        "--height", type=utils.positive_int, help="result height, a multiple of 8 (default: the map's)"
    )
    parser.add_argument("--fit", choices=FIT_MODES, default="pad", help="how the map meets --width/--height")
    parser.add_argument(
        "--stick-scaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="thicker limbs for SDXL ControlNets (default: on)",
    )
    parser.add_argument("--vae-id", help="replacement VAE, e.g. madebyollin/sdxl-vae-fp16-fix")
    utils.add_detector_arguments(parser)
    utils.add_pipeline_arguments(parser, utils.SDXL_MODEL, utils.SDXL_CONTROLNET, steps=30)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = utils.parse_sized_args(parser, argv)
    out = utils.output_dir(args.output_dir)
    photo = Image.open(args.image).convert("RGB")

    control = utils.control_map(args, photo, stick_scaling=args.stick_scaling)
    if args.width is None:
        width, height = pipeline_size(control)
    else:
        width, height = args.width, args.height
        control = fit_control_image(control, width, height, mode=args.fit)
    utils.warn_if_empty(control)
    control.save(out / "control.png")

    result = utils.generate_result(args, control, width, height, out, sdxl=True)
    utils.side_by_side([photo, control, result]).save(out / "comparison.png")
    print(
        f"wrote {out / 'control.png'}, {out / 'result.png'} and {out / 'comparison.png'} ({width}x{height})"
    )


if __name__ == "__main__":
    utils.run(main)
