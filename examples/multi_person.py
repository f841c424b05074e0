"""Several persons: detect everyone, choose whom to keep, and generate a group picture.

    python examples/multi_person.py --image group.jpg --prompt "three friends hiking"
    python examples/multi_person.py --keep 0      # only the leftmost person

Several --image files are put side by side into one group picture (the default uses the two
example portraits). Persons are numbered left to right. Writes persons.json (OpenPose JSON of the
kept persons, in the photo's pixels), control.png, overlay.png (skeletons drawn on the dimmed
photo), result.png and comparison.png to --output-dir.
"""

from __future__ import annotations

import argparse
import dataclasses

import example_utils as utils
import numpy as np
from PIL import Image

from dwpose_ctrl.diffusers_utils import pipeline_size
from dwpose_ctrl.openpose import persons_to_openpose, write_json
from dwpose_ctrl.render import RenderOptions, draw_openpose


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/multi_person")
    parser.add_argument(
        "--image",
        nargs="+",
        default=[str(utils.EXAMPLE_IMAGES / "astronaut.png"), str(utils.EXAMPLE_IMAGES / "grace_hopper.jpg")],
        help="one group photo, or several photos put side by side",
    )
    parser.add_argument("--max-persons", type=utils.positive_int, help="keep at most the N largest persons")
    parser.add_argument("--keep", type=int, nargs="+", metavar="INDEX", help="persons to keep (0 = leftmost)")
    utils.add_resolution_argument(parser)
    parser.add_argument("--skip-generation", action="store_true", help="stop after writing the maps")
    utils.add_detector_arguments(parser)
    utils.add_pipeline_arguments(parser, utils.SD15_MODEL, utils.SD15_CONTROLNET, steps=20)
    parser.set_defaults(prompt="two people posing for a photo, best quality, detailed")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = utils.output_dir(args.output_dir)
    photos = [Image.open(path).convert("RGB") for path in args.image]
    photo = photos[0] if len(photos) == 1 else utils.side_by_side(photos)

    detector = utils.build_detector(args, max_persons=args.max_persons)
    persons = detector.estimate(photo, detect_resolution=args.detect_resolution)  # photo pixels
    persons = sorted(persons, key=lambda person: person.box[0])
    for index, person in enumerate(persons):
        x1, y1, x2, y2 = person.box.round().astype(int)
        score = "none" if person.box_score is None else f"{person.box_score:.2f}"
        print(
            f"person {index}: box ({x1}, {y1}, {x2}, {y2}), box score {score}, "
            f"{int(person.visible()[:17].sum())}/17 body joints visible"
        )
    if args.keep is not None:
        unknown = [index for index in args.keep if not 0 <= index < len(persons)]
        if unknown:
            parser.error(f"--keep {unknown}: there are {len(persons)} persons (0 to {len(persons) - 1})")
        persons = [persons[index] for index in args.keep]

    frame = persons_to_openpose(persons, photo.width, photo.height)
    write_json(out / "persons.json", frame, photo.width, photo.height, indent=1)
    # The frame is resolution-free: draw it at the size the pipeline will generate.
    width, height = pipeline_size(photo, resolution=args.resolution)
    control = Image.fromarray(draw_openpose(dataclasses.replace(frame, width=width, height=height)))
    control.save(out / "control.png")
    overlay = draw_openpose(frame, canvas=np.asarray(photo), options=RenderOptions())
    Image.fromarray(overlay).save(out / "overlay.png")
    print(f"kept {len(persons)} persons; wrote persons.json, control.png and overlay.png to {out}")
    if args.skip_generation:
        return

    result = utils.generate_result(args, control, width, height, out)
    utils.side_by_side([Image.fromarray(overlay), control, result]).save(out / "comparison.png")
    print(f"wrote {out / 'result.png'} and {out / 'comparison.png'}")


if __name__ == "__main__":
    utils.run(main)
