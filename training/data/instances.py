"""Person instances of COCO-WholeBody-style annotation files, with the SPEC 9 instance filters.

A :class:`PersonInstance` is everything the top-down pipeline needs about one annotated person:
its image, its box and its keypoints in the layout of a :class:`KeypointMetadata`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwpose_ctrl.keypoints import COCO_WHOLEBODY, KeypointMetadata

# Annotation fields in the order they concatenate into the 133 COCO-WholeBody points.
WHOLEBODY_FIELDS: tuple[tuple[str, str], ...] = (
    ("body", "keypoints"),
    ("foot", "foot_kpts"),
    ("face", "face_kpts"),
    ("lefthand", "lefthand_kpts"),
    ("righthand", "righthand_kpts"),
)


@dataclass(frozen=True)
class PersonInstance:
    """One annotated person.

    ``box`` is (x1, y1, x2, y2) float32 clipped to the image as mmpose does, ``keypoints`` (K, 2)
    float32 image pixels, ``visibility`` (K,) float32 1 for labelled points and 0 otherwise,
    ``area`` the annotation's area (OKS), ``num_body_keypoints`` the labelled body points.
    """

    image_path: str
    image_id: int
    annotation_id: int
    box: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    area: float
    iscrowd: bool
    num_body_keypoints: int
    box_score: float = 1.0


def annotation_fields(metadata: KeypointMetadata) -> list[str]:
    """The COCO-WholeBody fields whose concatenation gives ``metadata``'s keypoints."""
    fields = [field for part, field in WHOLEBODY_FIELDS if part in metadata.parts]
    if not fields:
        raise ValueError(
            f"layout {metadata.name!r} has none of the COCO-WholeBody parts "
            f"{[part for part, _ in WHOLEBODY_FIELDS]}"
        )
    return fields


def is_valid_instance(instance: PersonInstance) -> bool:
    """SPEC 9 filter: not crowd, some labelled body keypoint, a box with positive size, some keypoint."""
    if instance.iscrowd or instance.num_body_keypoints == 0:
        return False
    width, height = instance.box[2:] - instance.box[:2]
    if width <= 0 or height <= 0:
        return False
    return bool(np.max(instance.keypoints) > 0)


def parse_annotation(
    annotation: dict, image: dict, image_root: Path, metadata: KeypointMetadata = COCO_WHOLEBODY
) -> PersonInstance:
    """One COCO-WholeBody annotation dict (and its image dict) as a :class:`PersonInstance`."""
    values: list[float] = []
    for field in annotation_fields(metadata):
        if field not in annotation:
            raise ValueError(
                f"annotation {annotation.get('id')} has no {field!r} (COCO-WholeBody format expected)"
            )
        if not isinstance(annotation[field], list):
            raise ValueError(f"{field!r} must be a list of x, y, v numbers, got {annotation[field]!r}")
        values.extend(annotation[field])
    triplets = np.asarray(values, dtype=np.float32).reshape(-1, 3)
    if len(triplets) != metadata.num_keypoints:
        raise ValueError(
            f"annotation {annotation.get('id')} has {len(triplets)} keypoints, layout "
            f"{metadata.name!r} expects {metadata.num_keypoints}"
        )
    bbox = annotation["bbox"]
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        raise ValueError(f"'bbox' must be 4 numbers [x, y, width, height], got {bbox!r}")
    x, y, w, h = bbox
    image_width, image_height = image["width"], image["height"]
    box = np.array(
        [
            np.clip(x, 0, image_width - 1),
            np.clip(y, 0, image_height - 1),
            np.clip(x + w, 0, image_width - 1),
            np.clip(y + h, 0, image_height - 1),
        ],
        dtype=np.float32,
    )
    body = np.asarray(annotation.get("keypoints", []), dtype=np.float32).reshape(-1, 3)
    return PersonInstance(
        image_path=str(image_root / image["file_name"]),
        image_id=int(image["id"]),
        annotation_id=int(annotation["id"]),
        box=box,
        keypoints=np.ascontiguousarray(triplets[:, :2]),
        visibility=(triplets[:, 2] > 0).astype(np.float32),
        area=float(annotation.get("area", w * h)),
        iscrowd=bool(annotation.get("iscrowd", 0)),
        num_body_keypoints=int(annotation.get("num_keypoints", int((body[:, 2] > 0).sum()))),
    )


def read_json_file(path: str | os.PathLike, what: str = "JSON file"):
    """The content of a JSON file; a one-line ``ValueError`` naming the file when it is not JSON
    (garbled, truncated, not UTF-8, or nested too deeply to parse)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{what} {path} is not valid JSON ({error.msg}: line {error.lineno} column "
            f"{error.colno}); it is truncated or garbled"
        ) from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text JSON ({error.reason})") from error
    except RecursionError as error:
        raise ValueError(f"{what} {path} is nested too deeply to be read as JSON") from error


def load_annotation_file(path: str | os.PathLike) -> dict:
    """A COCO-style annotation file; a ``ValueError`` naming the file when it is not JSON or not COCO."""
    path = Path(path)
    data = read_json_file(path, "annotation file")
    if not isinstance(data, dict) or not {"images", "annotations"} <= set(data):
        raise ValueError(f"{path} is not a COCO-style annotation file (needs 'images' and 'annotations')")
    for key in ("images", "annotations"):
        if not isinstance(data[key], list):
            raise ValueError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")
    return data


def _field_problem(error: Exception) -> str:
    """A short reason for a malformed annotation or image entry."""
    if isinstance(error, KeyError):
        return f"has no {error.args[0]!r} field"
    return f"is malformed ({error})"


def _image_table(data: dict, path: Path, problems: list) -> dict:
    """Image id -> image entry; entries without an int id, a file name and a size become problems."""
    from training.data.checks import SampleProblem

    images = {}
    for index, image in enumerate(data["images"]):
        try:
            if not isinstance(image, dict):
                raise TypeError(f"an image entry must be an object, got {type(image).__name__}")
            for key, kinds in (
                ("id", int),
                ("file_name", str),
                ("width", (int, float)),
                ("height", (int, float)),
            ):
                if not isinstance(image[key], kinds) or isinstance(image[key], bool):
                    raise TypeError(f"{key!r} is {image[key]!r}")
        except (KeyError, TypeError) as error:
            problems.append(SampleProblem(f"{path}: image entry {index}", _field_problem(error)))
            continue
        images[image["id"]] = image
    return images


def load_coco_wholebody(
    annotation_file: str | os.PathLike,
    image_root: str | os.PathLike,
    metadata: KeypointMetadata = COCO_WHOLEBODY,
    filter_instances: bool = True,
    sample_interval: int = 1,
    problems: list | None = None,
) -> list[PersonInstance]:
    """Every person of a COCO-WholeBody annotation file, in image-id then annotation order.

    ``filter_instances`` applies the SPEC 9 filters (crowd, no body keypoints, degenerate box);
    ``sample_interval`` keeps only images whose id is a multiple of it (UBody uses 10).
    Malformed image or annotation entries raise one :class:`~training.data.checks.DatasetError`
    naming all of them, or, when a ``problems`` list is given, are appended to it and left out.
    """
    from training.data.checks import DatasetError, SampleProblem, instance_problem

    if sample_interval < 1:
        raise ValueError(f"sample_interval must be >= 1, got {sample_interval}")
    path = Path(annotation_file)
    data = load_annotation_file(path)
    image_root = Path(image_root)
    found: list[SampleProblem] = []
    images = _image_table(data, path, found)
    by_image: dict[int, list[dict]] = {}
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict) or not isinstance(annotation.get("image_id"), int):
            problem = "is not an object with an int 'image_id'"
            found.append(SampleProblem(f"{path}: annotation entry {index}", problem))
            continue
        if annotation.get("category_id", 1) != 1:
            continue
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    instances: list[PersonInstance] = []
    for image_id in sorted(images):
        if image_id % sample_interval:
            continue
        for annotation in by_image.get(image_id, []):
            try:
                instance = parse_annotation(annotation, images[image_id], image_root, metadata)
            except (KeyError, TypeError, ValueError) as error:
                where = f"{path}: annotation {annotation.get('id')!r} (image {image_id})"
                found.append(SampleProblem(where, _field_problem(error)))
                continue
            problem = instance_problem(instance)  # before the filters, which NaN would pass or fail silently
            if problem is not None:
                found.append(SampleProblem(instance.image_path, problem))
                continue
            if not filter_instances or is_valid_instance(instance):
                instances.append(instance)
    if found and problems is None:
        raise DatasetError(found, str(path))
    if problems is not None:
        problems.extend(found)
    return instances


def load_detections(
    bbox_file: str | os.PathLike,
    annotation_file: str | os.PathLike,
    image_root: str | os.PathLike,
    min_score: float = 0.0,
) -> list[PersonInstance]:
    """Person boxes of a COCO detection results file as keypoint-less instances for top-down inference.

    The file is a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``; only
    category 1 with score >= ``min_score`` is kept; image paths come from the annotation file.
    """
    detections = read_json_file(bbox_file, "detection results file")
    if not isinstance(detections, list):
        raise ValueError(f"{bbox_file} must hold a list of COCO detection results")
    images = {image["id"]: image for image in load_annotation_file(annotation_file)["images"]}
    image_root = Path(image_root)
    instances: list[PersonInstance] = []
    for index, detection in enumerate(detections):
        try:
            instance = _detection_instance(detection, index, images, image_root, min_score)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{bbox_file}: detection {index} {_field_problem(error)}") from error
        if instance is not None:
            instances.append(instance)
    return instances


def _detection_instance(
    detection: dict, index: int, images: dict, image_root: Path, min_score: float
) -> PersonInstance | None:
    """One COCO detection result as an instance (None when it is not a person or scores too low)."""
    if detection.get("category_id", 1) != 1 or detection["score"] < min_score:
        return None
    image = images.get(detection["image_id"])
    if image is None:
        raise ValueError(f"has image_id {detection['image_id']}, which the annotation file does not list")
    x, y, w, h = (float(value) for value in detection["bbox"])
    return PersonInstance(
        image_path=str(image_root / image["file_name"]),
        image_id=int(image["id"]),
        annotation_id=index,
        box=np.array([x, y, x + w, y + h], dtype=np.float32),
        keypoints=np.zeros((0, 2), dtype=np.float32),
        visibility=np.zeros((0,), dtype=np.float32),
        area=float(w * h),
        iscrowd=False,
        num_body_keypoints=0,
        box_score=float(detection["score"]),
    )
