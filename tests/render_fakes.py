"""Test doubles and input makers for the dwpose-render tests (engines, CLI, video, Ray).

:class:`BlobEstimator` is a :class:`~dwpose_ctrl.engines.pose.PoseEstimator` that needs no
network: every bright blob (pixels > 200 in all channels) of the image is a person whose 133
keypoints sit at fixed relative positions inside the blob's box. Maps drawn from it are exact
and change when the blobs move, so tests can check geometry, IDs and determinism.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from dwpose_ctrl.keypoints import NUM_KEYPOINTS, Person

TEMPLATE = np.random.default_rng(0).uniform(0.1, 0.9, size=(NUM_KEYPOINTS, 2))


def person_in_box(box: np.ndarray, box_score: float | None = 0.9) -> Person:
    box = np.asarray(box, dtype=np.float64)
    size = box[2:] - box[:2]
    keypoints = box[:2] + TEMPLATE * size
    return Person(
        keypoints=keypoints, scores=np.full(NUM_KEYPOINTS, 0.9), box=box.copy(), box_score=box_score
    )


def blob_boxes(image: np.ndarray) -> list[np.ndarray]:
    mask = (image > 200).all(axis=2).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = []
    for label in range(1, count):
        x, y, w, h, area = stats[label]
        if area >= 16:
            boxes.append(np.array([x, y, x + w, y + h], dtype=np.float64))
    boxes.sort(key=lambda box: (box[0], box[1]))
    return boxes


class BlobEstimator:
    """Persons = bright blobs. ``delay`` seconds of sleep per call make runs slow enough to kill."""

    keypoint_threshold = 0.3

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0
        self.box_calls = 0

    def estimate(self, image: np.ndarray, scale: float = 1.0) -> list[Person]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return [person_in_box(box) for box in blob_boxes(image)]

    def estimate_boxes(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[Person]:
        self.box_calls += 1
        found = blob_boxes(image)
        persons = []
        for box in boxes:
            overlaps = [
                b for b in found if b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3]
            ]
            persons.append(person_in_box(overlaps[0] if overlaps else box, None))
        return persons


def slow_factory(delay: float = 0.05):
    """A picklable estimator factory (module-level) for subprocess and Ray tests."""
    return BlobEstimator(delay)


class GatedEstimator(BlobEstimator):
    """The first call of a whole run (in any process) returns at once; every later call waits until
    ``gate/release`` exists (at most ``timeout`` seconds). Orders a multi-process run exactly: no
    second item finishes before the test has reacted to the first one.
    """

    def __init__(self, gate: str, timeout: float = 120.0):
        super().__init__()
        self.gate = Path(gate)
        self.timeout = timeout

    def estimate(self, image: np.ndarray, scale: float = 1.0) -> list[Person]:
        try:
            os.close(os.open(self.gate / "first", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            deadline = time.monotonic() + self.timeout
            while not (self.gate / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().estimate(image, scale)


def blob_factory() -> BlobEstimator:
    return BlobEstimator()


def broken_factory() -> BlobEstimator:
    raise ValueError("the pose model file is corrupt")


def blob_image(height: int, width: int, blobs: list[tuple[int, int, int, int]], seed: int = 0) -> np.ndarray:
    """A dark noisy RGB image with white rectangles (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)
    for x, y, w, h in blobs:
        image[y : y + h, x : x + w] = 255
    return image
