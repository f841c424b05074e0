"""A synthetic whole-body dataset in COCO-WholeBody format (images + one annotation JSON).

Articulated stick figures with a face (68 landmarks drawn as brows, eyes, nose and lips), hands
(21 points each, drawn as palm and fingers) and feet, in random poses and sizes, several per
image, partly occluded, over textured backgrounds. Every image is a pure function of
``(seed, image index)``, so datasets are reproducible and can be generated in parallel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dwpose_ctrl.keypoints import BODY, FACE, FEET, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate; ``image_size`` is (height, width), person heights are image fractions."""

    num_images: int = 64
    image_size: tuple[int, int] = (256, 256)
    max_persons: int = 3
    person_height_range: tuple[float, float] = (0.45, 0.95)
    occlusion_probability: float = 0.3
    jpeg_quality: int = 92
    seed: int = 0


def _rotate(vector: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([cos * vector[0] - sin * vector[1], sin * vector[0] + cos * vector[1]])


def _mirror(points: np.ndarray) -> np.ndarray:
    return points * np.array([-1.0, 1.0])


def _face_template() -> np.ndarray:
    """68 landmarks in face units (x right, y down, face width about 2), mirror-consistent."""
    points = np.zeros((68, 2))
    angles = np.linspace(np.pi, 0, 17)
    points[0:17] = np.stack([np.cos(angles) * 1.0, -np.sin(angles) * 1.15 + 0.15], axis=1) * [1, -1]
    brow = np.stack([np.linspace(-0.85, -0.2, 5), [-0.45, -0.58, -0.62, -0.58, -0.5]], axis=1)
    points[17:22] = brow
    points[22:27] = _mirror(brow[::-1])
    points[27:31] = np.stack([np.zeros(4), np.linspace(-0.35, 0.2, 4)], axis=1)
    points[31:36] = np.stack([np.linspace(-0.25, 0.25, 5), [0.3, 0.34, 0.36, 0.34, 0.3]], axis=1)
    eye = np.array(
        [[-0.7, -0.3], [-0.58, -0.38], [-0.42, -0.38], [-0.3, -0.3], [-0.42, -0.24], [-0.58, -0.24]]
    )
    points[36:42] = eye
    points[42:48] = _mirror(eye[[3, 2, 1, 0, 5, 4]])
    outer = np.array([[-0.45, 0.62], [-0.3, 0.55], [-0.12, 0.52], [0.0, 0.54]])
    points[48:52] = outer
    points[52:55] = _mirror(outer[[2, 1, 0]])
    lower = np.array([[0.3, 0.72], [0.12, 0.78], [0.0, 0.79]])
    points[55:58] = lower
    points[58:60] = _mirror(lower[[1, 0]])
    points[60:63] = np.array([[-0.35, 0.62], [-0.12, 0.59], [0.0, 0.6]])
    points[63:65] = _mirror(points[[61, 60]])
    points[65:68] = np.array([[0.12, 0.66], [0.0, 0.67], [-0.12, 0.66]])
    return points


FACE_TEMPLATE = _face_template()
# Finger base offsets from the hand root (right hand, hand pointing +y), spread and segment lengths.
_FINGER_BASES = np.array([[-0.25, 0.15], [-0.18, 0.55], [-0.03, 0.6], [0.12, 0.57], [0.25, 0.5]])
_FINGER_SPREAD = np.array([-45.0, -10.0, 0.0, 10.0, 22.0])
_FINGER_LENGTHS = np.array([0.22, 0.25, 0.27, 0.25, 0.2])


@dataclass(frozen=True)
class _Figure:
    keypoints: np.ndarray  # (133, 2)
    unit: float
    colors: dict
    yaw: float


def _hand(root: np.ndarray, direction: float, size: float, curl: np.ndarray, mirror: bool) -> np.ndarray:
    """21 hand points: root, then per finger 4 joints; ``direction`` degrees (0 = pointing down)."""
    points = np.zeros((21, 2))
    points[0] = root
    sign = -1.0 if mirror else 1.0
    for finger in range(5):
        base = _FINGER_BASES[finger] * [sign, 1.0]
        joint = root + _rotate(base * size, direction)
        heading = direction + sign * _FINGER_SPREAD[finger]
        for segment in range(4):
            points[1 + finger * 4 + segment] = joint
            heading += sign * curl[finger] * (segment + 1) / 4
            joint = joint + _rotate(np.array([0.0, _FINGER_LENGTHS[finger] * size]), heading)
    return points


@dataclass(frozen=True)
class LimbRange:
    """One limb's segment lengths (in units of height / 7.5) and angle ranges in degrees.

    ``abduction``: the first segment's angle away from the body's midline (0 = hanging along
    the body, 90 = out to the side, 180 = straight up); ``bend``: the second segment's angle to
    the first, positive outwards. ``min_clearance``: how far (in units) the end point must stay on
    its own side of the midline; a draw that ends closer is drawn again.
    """

    lengths: tuple[float, float]
    abduction: tuple[float, float]
    bend: tuple[float, float]
    min_clearance: float


# Upper arm 0.2 and forearm 0.17 of the height, shoulder abduction up to 165 degrees, elbow
# flexion up to 130 degrees seen from the front; thigh 0.25 and shin 0.24, hips abducted 0-35
# degrees (so knees are never medial of the hips), knees seen bent by up to 20 degrees inwards.
ARM = LimbRange(lengths=(1.5, 1.3), abduction=(-15.0, 165.0), bend=(-130.0, 60.0), min_clearance=0.1)
LEG = LimbRange(lengths=(1.9, 1.8), abduction=(0.0, 35.0), bend=(-20.0, 30.0), min_clearance=0.15)
_LIMB_DRAWS = 10


def _limb(
    rng: np.random.Generator,
    root: np.ndarray,
    pelvis: np.ndarray,
    outward: np.ndarray,
    lean: float,
    sign: float,
    limb: LimbRange,
    unit: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Middle joint, end point and the second segment's angle of one limb starting at ``root``.

    The body's midline runs through ``pelvis``; ``outward`` (unit length) points from it
    towards this side; ``sign`` is +1 for the left side (image angles turn the other way round on
    the two sides).
    """
    first_length, second_length = (length * unit for length in limb.lengths)
    for draw in range(_LIMB_DRAWS + 1):
        abduction = rng.uniform(*limb.abduction)
        bend = rng.uniform(*limb.bend) if draw < _LIMB_DRAWS else 0.0
        first_angle = lean - sign * abduction
        middle = root + _rotate(np.array([0.0, first_length]), first_angle)
        second_angle = first_angle - sign * bend
        end = middle + _rotate(np.array([0.0, second_length]), second_angle)
        if float(np.dot(end - pelvis, outward)) >= limb.min_clearance * unit:
            break
    return middle, end, second_angle


def _figure(rng: np.random.Generator, height: float, pelvis: np.ndarray) -> _Figure:
    """Random pose of a figure ``height`` pixels tall, pelvis at ``pelvis``."""
    u = height / 7.5
    keypoints = np.zeros((NUM_KEYPOINTS, 2))
    lean = rng.normal(0, 8)
    up = _rotate(np.array([0.0, -1.0]), lean)
    side = np.array([-up[1], up[0]])
    neck = pelvis + up * 2.6 * u
    shoulders = {"right": neck - side * 0.9 * u, "left": neck + side * 0.9 * u}
    hips = {"right": pelvis - side * 0.55 * u, "left": pelvis + side * 0.55 * u}
    head_tilt = lean + rng.normal(0, 10)
    head_up = _rotate(np.array([0.0, -1.0]), head_tilt)
    head_side = np.array([-head_up[1], head_up[0]])
    head = neck + head_up * 0.85 * u
    yaw = float(np.clip(rng.normal(0, 0.25), -0.6, 0.6))
    radius = 0.55 * u
    keypoints[0] = head + head_side * yaw * radius + head_up * -0.15 * radius
    for index, sign in ((1, 1.0), (2, -1.0)):
        keypoints[index] = head + head_side * (sign * 0.38 + yaw * 0.7) * radius + head_up * 0.25 * radius
    for index, sign in ((3, 1.0), (4, -1.0)):
        keypoints[index] = head + head_side * (sign * 0.95 + yaw * 0.2) * radius + head_up * 0.1 * radius
    wrists = {}
    for name, sign, shoulder_id, elbow_id, wrist_id in (("left", 1, 5, 7, 9), ("right", -1, 6, 8, 10)):
        keypoints[shoulder_id] = shoulders[name]
        elbow, wrist, fore_angle = _limb(rng, shoulders[name], pelvis, side * sign, lean, sign, ARM, u)
        keypoints[elbow_id], keypoints[wrist_id] = elbow, wrist
        wrists[name] = (wrist, fore_angle)
    ankles = {}
    for name, sign, hip_id, knee_id, ankle_id in (("left", 1, 11, 13, 15), ("right", -1, 12, 14, 16)):
        keypoints[hip_id] = hips[name]
        knee, ankle, shin_angle = _limb(rng, hips[name], pelvis, side * sign, lean, sign, LEG, u)
        keypoints[knee_id], keypoints[ankle_id] = knee, ankle
        ankles[name] = (ankle, shin_angle)
    for name, sign, first in (("left", 1.0, 17), ("right", -1.0, 20)):
        ankle, shin_angle = ankles[name]
        foot_dir = _rotate(np.array([0.0, 1.0]), shin_angle - sign * 75)
        keypoints[first] = ankle + foot_dir * 0.75 * u + _rotate(foot_dir, -sign * 90) * 0.12 * u
        keypoints[first + 1] = ankle + foot_dir * 0.6 * u + _rotate(foot_dir, sign * 90) * 0.18 * u
        keypoints[first + 2] = ankle - foot_dir * 0.2 * u + np.array([0.0, 0.2 * u])
    face_scale = radius * 0.72
    template = FACE_TEMPLATE * [np.cos(yaw * 0.9), 1.0] + [yaw * 0.9, 0.0]
    face = np.stack([_rotate(point * face_scale, head_tilt) for point in template]) + head
    keypoints[FACE] = face
    for name, hand_slice, mirror in (("left", LEFT_HAND, True), ("right", RIGHT_HAND, False)):
        wrist, fore_angle = wrists[name]
        root = wrist + _rotate(np.array([0.0, 0.15 * u]), fore_angle)
        curl = rng.uniform(0, 60, 5)
        keypoints[hand_slice] = _hand(root, fore_angle, 0.9 * u, curl, mirror)
    colors = {
        "skin": rng.integers(90, 255, 3),
        "left": rng.integers(0, 255, 3),
        "right": rng.integers(0, 255, 3),
        "torso": rng.integers(0, 255, 3),
        "features": rng.integers(0, 60, 3),
    }
    return _Figure(keypoints, u, colors, yaw)


_LIMBS = (
    ("left", (5, 7), 0.42), ("left", (7, 9), 0.36), ("right", (6, 8), 0.42), ("right", (8, 10), 0.36),
    ("left", (11, 13), 0.55), ("left", (13, 15), 0.45), ("right", (12, 14), 0.55), ("right", (14, 16), 0.45),
)  # fmt: skip


def _color(value) -> tuple[int, int, int]:
    return tuple(int(c) for c in value)


def _draw_figure(canvas: np.ndarray, mask: np.ndarray, figure: _Figure) -> None:
    """Draw one figure on the RGB canvas and, in 255, on its own mask."""
    k, u, colors = figure.keypoints, figure.unit, figure.colors
    shift = 4
    scale = 1 << shift

    def pts(indices) -> np.ndarray:
        return np.round(k[list(indices)] * scale).astype(np.int32)

    def line(a, b, color, thickness):
        pa, pb = (tuple(int(v) for v in np.round(p * scale)) for p in (a, b))
        for target, value in ((canvas, color), (mask, 255)):
            cv2.line(target, pa, pb, value, max(1, round(thickness)), cv2.LINE_AA, shift)

    def polygon(points, color):
        for target, value in ((canvas, color), (mask, 255)):
            cv2.fillPoly(target, [points], value, cv2.LINE_AA, shift)

    polygon(pts([5, 6, 12, 11]), _color(colors["torso"]))
    for side, (a, b), width in _LIMBS:
        line(k[a], k[b], _color(colors[side]), width * u)
    for first, side in ((17, "left"), (20, "right")):
        polygon(pts([first + 2, first, first + 1]), _color(colors[side]))
    neck = (k[5] + k[6]) / 2
    head = (k[3] + k[4]) / 2
    line(neck, head, _color(colors["skin"]), 0.35 * u)
    radius = np.linalg.norm(k[3] - k[4]) / 2 * 1.05
    center = tuple(int(v) for v in np.round(head * scale))
    axes = (int(radius * scale), int(radius * 1.2 * scale))
    for target, value in ((canvas, _color(colors["skin"])), (mask, 255)):
        cv2.ellipse(target, center, axes, 0, 0, 360, value, -1, cv2.LINE_AA, shift)
    feature = _color(colors["features"])
    thin = max(1, round(0.06 * u))
    face = FACE.start
    strokes = ((17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False), (36, 42, True),
               (42, 48, True), (48, 60, True), (60, 68, True), (0, 17, False))  # fmt: skip
    for start, stop, closed in strokes:
        cv2.polylines(
            canvas, [pts(range(face + start, face + stop))], closed, feature, thin, cv2.LINE_AA, shift
        )
    for hand in (LEFT_HAND, RIGHT_HAND):
        root = hand.start
        palm = pts([root, root + 1, root + 5, root + 9, root + 13, root + 17])
        polygon(palm, _color(colors["skin"]))
        for finger in range(5):
            chain = [root + 1 + finger * 4 + j for j in range(4)]
            for target, value in ((canvas, _color(np.asarray(colors["skin"]) * 0.8)), (mask, 255)):
                cv2.polylines(target, [pts(chain)], False, value, max(1, round(0.09 * u)), cv2.LINE_AA, shift)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One of: blurred noise, stripes, checkerboard or blobs, over a colour gradient."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xs / width * rng.uniform(-1, 1) + ys / height * rng.uniform(-1, 1)) % 1.0
    image = start + (end - start) * t[..., None]
    kind = int(rng.integers(0, 4))
    if kind == 0:
        noise = rng.normal(0, 1, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
        image += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) * 40
    elif kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        stripes = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) / period * 2 * np.pi) > 0
        image += stripes[..., None] * rng.uniform(-80, 80, 3)
    elif kind == 2:
        cell = int(rng.integers(8, 48))
        checker = ((xs // cell + ys // cell) % 2).astype(np.float32)
        image += checker[..., None] * rng.uniform(-80, 80, 3)
    else:
        for _ in range(int(rng.integers(5, 25))):
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(
                image, center, int(rng.integers(4, max(5, width // 5))), rng.uniform(0, 255, 3).tolist(), -1
            )
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _occlude(rng: np.random.Generator, canvas: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Draw an occluder over part of ``box``; return its mask."""
    height, width = canvas.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = max(x2 - x1, 2), max(y2 - y1, 2)
    ow, oh = rng.uniform(0.25, 0.6) * bw, rng.uniform(0.15, 0.4) * bh
    cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
    mask = np.zeros((height, width), np.uint8)
    corners = np.array([[cx - ow / 2, cy - oh / 2], [cx + ow / 2, cy + oh / 2]]).round().astype(int)
    color = rng.integers(0, 255, 3).tolist()
    if rng.random() < 0.5:
        cv2.rectangle(canvas, tuple(corners[0]), tuple(corners[1]), color, -1)
        cv2.rectangle(mask, tuple(corners[0]), tuple(corners[1]), 255, -1)
    else:
        axes = (int(ow / 2), int(oh / 2))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, color, -1)
        cv2.ellipse(mask, (int(cx), int(cy)), axes, 0, 0, 360, 255, -1)
    return mask


def _part_box(points: np.ndarray, labelled: np.ndarray) -> list[float]:
    if not labelled.any():
        return [0.0, 0.0, 0.0, 0.0]
    chosen = points[labelled]
    x1, y1 = chosen.min(axis=0)
    x2, y2 = chosen.max(axis=0)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def render_image(config: SyntheticConfig, index: int) -> tuple[np.ndarray, list[dict]]:
    """Image ``index`` of the dataset (RGB uint8) and its persons' COCO-WholeBody annotation fields."""
    rng = np.random.default_rng([config.seed, index])
    height, width = config.image_size
    canvas = _background(rng, height, width)
    count = int(rng.integers(1, config.max_persons + 1))
    slots = (np.arange(count) + rng.uniform(0.2, 0.8, count)) / count
    figures, masks = [], []
    for slot in rng.permutation(slots):
        figure_height = rng.uniform(*config.person_height_range) * height
        pelvis = np.array([slot * width, rng.uniform(0.45, 0.75) * height])
        figure = _figure(rng, figure_height, pelvis)
        mask = np.zeros((height, width), np.uint8)
        _draw_figure(canvas, mask, figure)
        for earlier in masks:
            earlier[mask > 0] = 0
        figures.append(figure)
        masks.append(mask)
    occluders = np.zeros((height, width), np.uint8)
    persons = []
    for figure, mask in zip(figures, masks, strict=False):
        points = figure.keypoints
        inside = (
            (points[:, 0] >= 0)
            & (points[:, 0] <= width - 1)
            & (points[:, 1] >= 0)
            & (points[:, 1] <= height - 1)
        )
        if inside[BODY].sum() < 3:
            continue
        labelled_points = points[inside]
        box = np.array([*labelled_points.min(axis=0), *labelled_points.max(axis=0)])
        if rng.random() < config.occlusion_probability:
            occluders |= _occlude(rng, canvas, box)
        persons.append((figure, mask, inside, box))
    annotations = []
    for figure, mask, inside, box in persons:
        points = figure.keypoints
        xs = np.clip(np.round(points[:, 0]).astype(int), 0, width - 1)
        ys = np.clip(np.round(points[:, 1]).astype(int), 0, height - 1)
        hidden = occluders[ys, xs] > 0
        visibility = np.where(inside, np.where(hidden, 1, 2), 0)
        triplets = np.concatenate([np.where(inside[:, None], points, 0), visibility[:, None]], axis=1)
        margin = 0.05 * (box[2:] - box[:2])
        x1, y1 = np.maximum(box[:2] - margin, 0)
        x2, y2 = np.minimum(box[2:] + margin, [width - 1, height - 1])
        labelled = visibility > 0
        fields = {
            "keypoints": triplets[BODY],
            "foot_kpts": triplets[FEET],
            "face_kpts": triplets[FACE],
            "lefthand_kpts": triplets[LEFT_HAND],
            "righthand_kpts": triplets[RIGHT_HAND],
        }
        annotation = {key: [round(float(v), 2) for v in value.reshape(-1)] for key, value in fields.items()}
        annotation.update(
            bbox=[round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
            area=float(max(int((mask > 0).sum()), 1)),
            num_keypoints=int(labelled[BODY].sum()),
            iscrowd=0,
            category_id=1,
            segmentation=[],
            face_box=_part_box(points[FACE], labelled[FACE]),
            lefthand_box=_part_box(points[LEFT_HAND], labelled[LEFT_HAND]),
            righthand_box=_part_box(points[RIGHT_HAND], labelled[RIGHT_HAND]),
            face_valid=bool(labelled[FACE].sum() >= 10),
            lefthand_valid=bool(labelled[LEFT_HAND].sum() >= 5),
            righthand_valid=bool(labelled[RIGHT_HAND].sum() >= 5),
            foot_valid=bool(labelled[FEET].any()),
        )
        annotations.append(annotation)
    return canvas, annotations


def generate_synthetic_dataset(
    output_dir: str | os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    annotation_name: str = "annotations.json",
) -> Path:
    """Write ``images/000000.jpg``... and ``annotations.json`` under ``output_dir``; returns the JSON path."""
    if config.num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {config.num_images}")
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    height, width = config.image_size
    images, annotations = [], []
    for index in range(config.num_images):
        canvas, persons = render_image(config, index)
        file_name = f"images/{index:06d}.jpg"
        cv2.imwrite(
            str(output_dir / file_name),
            cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality],
        )
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for person in persons:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **person})
    dataset = {
        "info": {"description": "dwpose-ctrl synthetic whole-body dataset", "seed": config.seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    path = output_dir / annotation_name
    path.write_text(json.dumps(dataset))
    return path
