"""Edit a pose through its OpenPose JSON and render it again (optionally generate from it).

    python examples/edit_pose.py --pose examples/poses/waving.json --rotate right_arm=120 --mirror
    python examples/edit_pose.py --image photo.jpg --move left_wrist=30,-40 --drop face --generate

The pose comes from an OpenPose JSON file (ours, ComfyUI's or the A1111 extension's) or is
detected in --image. Edits, applied in this order to --person (default: everyone):
  --rotate LIMB=DEGREES  turn an arm, forearm or leg about its shoulder, elbow or hip
                         (clockwise on screen); the hand or foot turns with it
  --move JOINT=DX,DY     move one body joint by pixels (a wrist takes its hand along)
  --shift DX,DY          move the whole person by pixels
  --mirror               mirror left-right (left and right joints swap roles, as in a mirror image)
  --drop PART            remove hands, face or feet
Writes original.json, edited.json, original.png, edited.png and comparison.png to --output-dir,
and with --generate result.png from the SD 1.5 openpose ControlNet.
"""

from __future__ import annotations

import argparse
import dataclasses

import example_utils as utils
import numpy as np
from PIL import Image

from dwpose_ctrl.diffusers_utils import pipeline_size
from dwpose_ctrl.openpose import (
    OPENPOSE_BODY_NAMES,
    OpenPoseFrame,
    OpenPosePerson,
    persons_to_openpose,
    read_json,
    write_json,
)
from dwpose_ctrl.render import RenderOptions, draw_openpose

JOINT = {name: index for index, name in enumerate(OPENPOSE_BODY_NAMES)}
# limb -> (pivot joint, body joints that turn, hand or feet that turn with them)
LIMBS = {
    "right_arm": ("right_shoulder", ("right_elbow", "right_wrist"), "right_hand"),
    "right_forearm": ("right_elbow", ("right_wrist",), "right_hand"),
    "left_arm": ("left_shoulder", ("left_elbow", "left_wrist"), "left_hand"),
    "left_forearm": ("left_elbow", ("left_wrist",), "left_hand"),
    "right_leg": ("right_hip", ("right_knee", "right_ankle"), "right_foot"),
    "left_leg": ("left_hip", ("left_knee", "left_ankle"), "left_foot"),
}
WRIST_HANDS = {"right_wrist": "right_hand", "left_wrist": "left_hand"}
# Feet are (left big toe, left small toe, left heel, right big toe, right small toe, right heel).
FOOT_POINTS = {"left_foot": slice(0, 3), "right_foot": slice(3, 6)}
# OpenPose-18 body joints after a left-right mirror: each left joint becomes the right one.
BODY_MIRROR = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
# The 68 face landmarks after a mirror (jaw reversed, brows, eyes, nostrils and lips swapped).
FACE_MIRROR = (
    *range(16, -1, -1), *range(26, 21, -1), *range(21, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)  # fmt: skip
FEET_MIRROR = (3, 4, 5, 0, 1, 2)
PARTS = ("hands", "face", "feet")


def _pixels(points: np.ndarray, frame: OpenPoseFrame) -> np.ndarray:
    return points[:, :2] * (frame.width, frame.height)


def _with_pixels(points: np.ndarray, pixels: np.ndarray, frame: OpenPoseFrame) -> np.ndarray:
    moved = points.copy()
    moved[:, :2] = pixels / (frame.width, frame.height)
    return moved


def _arrays(person: OpenPosePerson) -> dict[str, np.ndarray]:
    return {
        name: getattr(person, name).copy() for name in ("body", "feet", "face", "left_hand", "right_hand")
    }


def rotate_limb(person: OpenPosePerson, frame: OpenPoseFrame, limb: str, degrees: float) -> OpenPosePerson:
    """Turn ``limb`` about its pivot joint by ``degrees`` (clockwise on screen, y pointing down)."""
    pivot_name, joint_names, attached = LIMBS[limb]
    parts = _arrays(person)
    pivot = _pixels(parts["body"], frame)[JOINT[pivot_name]]
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def turn(points: np.ndarray) -> np.ndarray:
        return _with_pixels(points, (_pixels(points, frame) - pivot) @ rotation.T + pivot, frame)

    joints = [JOINT[name] for name in joint_names]
    parts["body"][joints] = turn(parts["body"][joints])
    if attached in FOOT_POINTS:
        parts["feet"][FOOT_POINTS[attached]] = turn(parts["feet"][FOOT_POINTS[attached]])
    else:
        parts[attached] = turn(parts[attached])
    return OpenPosePerson(**parts)


def move_joint(person: OpenPosePerson, frame: OpenPoseFrame, joint: str, offset: tuple[float, float]):
    """Move one body joint by ``offset`` pixels; a wrist takes its hand along."""
    parts = _arrays(person)
    index = JOINT[joint]
    parts["body"][[index]] = _with_pixels(
        parts["body"][[index]], _pixels(parts["body"][[index]], frame) + offset, frame
    )
    if joint in WRIST_HANDS:
        hand = WRIST_HANDS[joint]
        parts[hand] = _with_pixels(parts[hand], _pixels(parts[hand], frame) + offset, frame)
    return OpenPosePerson(**parts)


def shift(person: OpenPosePerson, frame: OpenPoseFrame, offset: tuple[float, float]) -> OpenPosePerson:
    """Move every point of the person by ``offset`` pixels."""
    parts = _arrays(person)
    return OpenPosePerson(
        **{
            name: _with_pixels(points, _pixels(points, frame) + offset, frame)
            for name, points in parts.items()
        }
    )


def mirror(person: OpenPosePerson) -> OpenPosePerson:
    """Mirror left-right about the canvas centre; left and right joints, hands and feet swap."""

    def flip(points: np.ndarray, order) -> np.ndarray:
        flipped = points[list(order)].copy()
        flipped[:, 0] = 1.0 - flipped[:, 0]
        return flipped

    return OpenPosePerson(
        body=flip(person.body, BODY_MIRROR),
        feet=flip(person.feet, FEET_MIRROR),
        face=flip(person.face, FACE_MIRROR),
        left_hand=flip(person.right_hand, range(21)),
        right_hand=flip(person.left_hand, range(21)),
    )


def drop(person: OpenPosePerson, part: str) -> OpenPosePerson:
    """Remove a part: its points become missing (score 0)."""
    parts = _arrays(person)
    names = {"hands": ("left_hand", "right_hand"), "face": ("face",), "feet": ("feet",)}[part]
    for name in names:
        parts[name][:] = 0.0
    return OpenPosePerson(**parts)


def _name_value(text: str, names, what: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or name not in names:
        raise argparse.ArgumentTypeError(
            f"expected {what}=VALUE with {what} one of {', '.join(names)}; got {text!r}"
        )
    return name, value


def _offset(text: str) -> tuple[float, float]:
    try:
        dx, dy = (float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DX,DY in pixels, e.g. 20,-35; got {text!r}") from None
    return dx, dy


def _rotation(text: str) -> tuple[str, float]:
    limb, value = _name_value(text, tuple(LIMBS), "LIMB")
    try:
        return limb, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LIMB=DEGREES, e.g. right_arm=90; got {text!r}") from None


def _move(text: str) -> tuple[str, tuple[float, float]]:
    joint, value = _name_value(text, OPENPOSE_BODY_NAMES, "JOINT")
    return joint, _offset(value)


def build_parser() -> argparse.ArgumentParser:
    parser = utils.example_parser(__doc__, "outputs/edit_pose")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--pose", default=str(utils.EXAMPLE_POSES / "waving.json"), help="OpenPose JSON file")
    source.add_argument("--image", help="detect the pose in this photo instead")
    parser.add_argument("--person", type=int, help="edit only this person (default: everyone)")
    parser.add_argument("--rotate", type=_rotation, action="append", default=[], metavar="LIMB=DEGREES")
    parser.add_argument("--move", type=_move, action="append", default=[], metavar="JOINT=DX,DY")
    parser.add_argument("--shift", type=_offset, metavar="DX,DY")
    parser.add_argument("--mirror", action="store_true")
    parser.add_argument("--drop", choices=PARTS, action="append", default=[])
    parser.add_argument("--generate", action="store_true", help="also generate an image from the edited pose")
    utils.add_resolution_argument(parser, sizes="the maps and the result")
    utils.add_detector_arguments(parser)
    utils.add_pipeline_arguments(parser, utils.SD15_MODEL, utils.SD15_CONTROLNET, steps=20)
    return parser


def edit(person: OpenPosePerson, frame: OpenPoseFrame, args: argparse.Namespace) -> OpenPosePerson:
    """Apply the command line's edits to one person, in the documented order."""
    for limb, degrees in args.rotate:
        person = rotate_limb(person, frame, limb, degrees)
    for joint, offset in args.move:
        person = move_joint(person, frame, joint, offset)
    if args.shift:
        person = shift(person, frame, args.shift)
    if args.mirror:
        person = mirror(person)
    for part in args.drop:
        person = drop(person, part)
    return person


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = utils.output_dir(args.output_dir)
    if args.image:
        photo = Image.open(args.image).convert("RGB")
        persons = utils.build_detector(args).estimate(photo, detect_resolution=args.detect_resolution)
        frame = persons_to_openpose(persons, photo.width, photo.height)
    else:
        frame = read_json(args.pose)
    if args.person is not None and not 0 <= args.person < len(frame.people):
        parser.error(f"--person {args.person}: the pose has {len(frame.people)} persons")
    people = [
        edit(person, frame, args) if args.person in (None, index) else person
        for index, person in enumerate(frame.people)
    ]
    edited = dataclasses.replace(frame, people=people)
    write_json(out / "original.json", frame, frame.width, frame.height, indent=1)
    write_json(out / "edited.json", edited, frame.width, frame.height, indent=1)

    # Frames are resolution-free: draw both at the size the pipeline would generate.
    width, height = pipeline_size((frame.width, frame.height), resolution=args.resolution)
    options = RenderOptions()
    maps = [
        Image.fromarray(draw_openpose(dataclasses.replace(f, width=width, height=height), options=options))
        for f in (frame, edited)
    ]
    maps[0].save(out / "original.png")
    maps[1].save(out / "edited.png")
    shown = list(maps)
    if args.generate:
        shown.append(utils.generate_result(args, maps[1], width, height, out))
    utils.side_by_side(shown).save(out / "comparison.png")
    print(f"wrote edited.json, edited.png and comparison.png to {out}")


if __name__ == "__main__":
    utils.run(main)
