"""What the faster modes cost: detector recall on val5 and keypoint deviation on the same crops."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Recall:
    found: int
    total: int

    def __str__(self) -> str:
        return f"{self.found}/{self.total}"


def iou_xyxy(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Plain IoU (no +1) of one xyxy box against (M, 4) boxes."""
    if len(others) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def annotated_persons(annotations_path: Path, min_area: float = 1024.0) -> dict[str, np.ndarray]:
    """Per image file name: xyxy boxes of the annotated persons whose COCO ``area`` exceeds ``min_area``."""
    data = json.loads(Path(annotations_path).read_text())
    names = {image["id"]: image["file_name"] for image in data["images"]}
    boxes: dict[str, list] = {name: [] for name in names.values()}
    for annotation in data["annotations"]:
        if annotation["area"] > min_area and not annotation.get("iscrowd", 0):
            x, y, w, h = annotation["bbox"]
            boxes[names[annotation["image_id"]]].append([x, y, x + w, y + h])
    return {name: np.asarray(value, dtype=np.float64).reshape(-1, 4) for name, value in boxes.items()}


def detector_recall(
    det_model: Path,
    pose_model: Path,
    images_dir: Path,
    mode: str = "default",
    detect_resolution: int = 512,
    iou: float = 0.5,
) -> Recall:
    """Annotated persons (area > 1024) matched one-to-one by a detected box with IoU >= ``iou``.

    Detection runs as in the pipeline: on the image resized by the SPEC 1 rule, boxes scaled back.
    ``pose_model`` is only needed to build the detector object; it is never run.
    """
    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.inputs import to_rgb
    from dwpose_ctrl.resize import resize_to_resolution

    detector = DWposeDetector(det_model=det_model, pose_model=pose_model, mode=mode)
    truth = annotated_persons(images_dir / "annotations.json")
    found = total = 0
    for name, true_boxes in truth.items():
        rgb = to_rgb(images_dir / name)
        resized = resize_to_resolution(rgb, detect_resolution)
        detections = detector.detect(resized)
        scale = np.array([rgb.shape[1] / resized.shape[1], rgb.shape[0] / resized.shape[0]] * 2)
        boxes = detections.boxes * scale
        unused = np.ones(len(boxes), dtype=bool)
        for true_box in true_boxes:
            overlaps = iou_xyxy(true_box, boxes)
            overlaps[~unused] = 0.0
            if overlaps.size and overlaps.max() >= iou:
                unused[int(np.argmax(overlaps))] = False
                found += 1
        total += len(true_boxes)
    return Recall(found, total)


@dataclass(frozen=True)
class KeypointDeviation:
    """Distance (pixels of the detection image) between two models' keypoints on the same crops."""

    persons: int
    median_px: float
    mean_px: float
    p95_px: float
    within_1px: float

    def __str__(self) -> str:
        return (
            f"median {self.median_px:.1f} px, mean {self.mean_px:.1f} px, "
            f"95th percentile {self.p95_px:.1f} px, "
            f"{100 * self.within_1px:.0f}% of keypoints within 1 px ({self.persons} persons)"
        )


def keypoint_deviation(reference: list[np.ndarray], candidate: list[np.ndarray]) -> KeypointDeviation:
    """Compare per-image (N, 133, 2) keypoints of two runs that used the same boxes."""
    distances = []
    persons = 0
    for a, b in zip(reference, candidate, strict=True):
        if a.shape != b.shape:
            raise ValueError(f"the two runs saw different persons: {a.shape} vs {b.shape}")
        persons += a.shape[0]
        distances.append(np.linalg.norm(a - b, axis=-1).ravel())
    flat = np.concatenate(distances) if distances else np.zeros(0)
    if flat.size == 0:
        return KeypointDeviation(0, float("nan"), float("nan"), float("nan"), float("nan"))
    return KeypointDeviation(
        persons,
        float(np.median(flat)),
        float(np.mean(flat)),
        float(np.percentile(flat, 95)),
        float(np.mean(flat <= 1.0)),
    )
