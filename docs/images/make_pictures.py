"""Make the documentation pictures in this folder (run from the repository root).

    python docs/images/make_pictures.py [--yolox ../shared/assets/weights/yolox_nano.onnx]

Honest by construction: the official DWPose pose model cannot be downloaded where these were
made, so no picture here shows keypoints estimated from a photo. The pose pictures are drawn by
the toolkit's renderer from the hand-written OpenPose JSON ``examples/poses/waving.json``; the
detection picture shows only the person box the real YOLOX-Nano finds in a portrait.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dwpose_ctrl.openpose import read_json
from dwpose_ctrl.render import RenderOptions, draw_openpose, render_map

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "docs" / "images"
POSE = ROOT / "examples" / "poses" / "waving.json"
PORTRAIT = ROOT / "examples" / "images" / "grace_hopper.jpg"


def side_by_side(images: list[np.ndarray], gap: int = 8) -> np.ndarray:
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    strip = np.full((height, width, 3), 255, np.uint8)
    left = 0
    for image in images:
        strip[: image.shape[0], left : left + image.shape[1]] = image
        left += image.shape[1] + gap
    return strip


def pose_pictures() -> None:
    frame = read_json(POSE)
    Image.fromarray(draw_openpose(frame)).save(HERE / "pose_map_waving.png", optimize=True)

    sys.path.insert(0, str(ROOT / "examples"))
    from edit_pose import mirror, rotate_limb

    person = frame.people[0]
    edited = dataclasses.replace(frame, people=[mirror(rotate_limb(person, frame, "left_arm", -150))])
    maps = [draw_openpose(frame), draw_openpose(edited)]
    Image.fromarray(side_by_side(maps)).save(HERE / "pose_editing.png", optimize=True)

    large = dataclasses.replace(frame, width=1024, height=1536)
    plain = draw_openpose(large)
    scaled = draw_openpose(large, options=RenderOptions(stick_scaling=True))
    pair = side_by_side([plain, scaled], gap=16)
    small = cv2.resize(pair, (pair.shape[1] // 2, pair.shape[0] // 2), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(HERE / "stick_scaling.png", optimize=True)


def style_picture() -> None:
    """The pose detected at 384 x 512 and written at 768 x 1024: the annotator's map (upscaled),
    drawn at the output resolution, MusePose's and MimicMotion's styles (a crop around the raised hand)."""
    frame = dataclasses.replace(read_json(POSE), width=384, height=512)
    variants = [
        RenderOptions(),
        RenderOptions(draw_at_output_resolution=True),
        RenderOptions(style="musepose"),
        RenderOptions(style="mimicmotion"),
    ]
    crops = [render_map(frame, (1024, 768), options)[40:440, 60:460] for options in variants]
    Image.fromarray(side_by_side(crops)).save(HERE / "styles.png", optimize=True)


def retargeting_picture() -> None:
    """A driving figure drawn narrow and tall with its left arm raised, then retargeted onto the
    example pose (the reference) by segments and by the linear fit, all on the reference's canvas."""
    from edit_pose import rotate_limb

    from dwpose_ctrl.retarget import retarget_sequence
    from dwpose_ctrl.sequence import PoseSequence, person_from_points, person_points

    reference = read_json(POSE)
    raised = person_points(rotate_limb(reference.people[0], reference, "left_arm", -150))
    raised[:, 0] = 0.25 + 0.6 * raised[:, 0]  # narrower ...
    raised[:, 1] = 0.02 + 0.9 * raised[:, 1]  # ... and, on its canvas, relatively taller
    driving = dataclasses.replace(reference, people=[person_from_points(raised)])
    sequence = PoseSequence.from_frames([driving])
    panels = [draw_openpose(reference), draw_openpose(driving)]
    for method in ("segments", "linear"):
        panels.append(draw_openpose(retarget_sequence(sequence, reference, method).frames[0].pose))
    strip = side_by_side(panels, gap=16)
    small = cv2.resize(strip, (strip.shape[1] // 2, strip.shape[0] // 2), interpolation=cv2.INTER_AREA)
    Image.fromarray(small).save(HERE / "retargeting.png", optimize=True)


def detection_picture(yolox: Path) -> None:
    from dwpose_ctrl.detector import DWposeDetector

    detector = DWposeDetector(det_model=yolox, pose_model=yolox)  # the pose model is never loaded here
    photo = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    detections = detector.detect(photo)
    drawn = photo.copy()
    for (x1, y1, x2, y2), score in zip(detections.boxes, detections.scores, strict=True):
        cv2.rectangle(drawn, (round(x1), round(y1)), (round(x2), round(y2)), (0, 255, 0), 3)
        label_at = (round(x1) + 6, round(y1) + 28)
        cv2.putText(drawn, f"person {score:.2f}", label_at, cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 0), 2)
    Image.fromarray(drawn).save(HERE / "person_detection_yolox_nano.jpg", quality=90)
    print(f"YOLOX-Nano: {len(detections)} person box(es): {np.round(detections.boxes, 1).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yolox", type=Path, default=ROOT.parent / "shared/assets/weights/yolox_nano.onnx")
    args = parser.parse_args()
    pose_pictures()
    style_picture()
    retargeting_picture()
    if args.yolox.exists():
        detection_picture(args.yolox)
    else:
        print(f"{args.yolox} not found: person_detection_yolox_nano.jpg not remade", file=sys.stderr)


if __name__ == "__main__":
    main()
