"""YOLOX person detection: letterbox, grid decode, class-aware NMS, thresholds (SPEC section 2).

The network itself runs behind a :class:`dwpose_ctrl.runtime.Backend`; this module only prepares
its input and reads its output, with the reference's dtypes so that boxes match it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dwpose_ctrl.runtime import Backend

YOLOX_STRIDES = (8, 16, 32)
PERSON_CLASS = 0
LETTERBOX_FILL = 114


@dataclass(frozen=True)
class Detections:
    """Person boxes (N, 4) float64 ``x1, y1, x2, y2`` in image pixels and their scores (N,)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4 or self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(
                f"boxes must be (N, 4) and scores (N,), got {self.boxes.shape} and {self.scores.shape}"
            )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float64), np.zeros((0,), np.float64))


def letterbox(
    image: np.ndarray, input_size: tuple[int, int], reverse_channels: bool = False
) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio, paste at the top-left of a 114-filled canvas.

    ``input_size`` is the model's (height, width). Returns the (1, 3, H, W) float32 batch (values
    0-255, channel order as given, or reversed with ``reverse_channels``: RGB in, BGR out) and the
    resize ratio ``r``. Reversing here costs nothing (the float conversion copies anyway) and gives
    exactly the batch of the reversed image, as the resize treats channels independently.
    """
    input_height, input_width = input_size
    height, width = image.shape[:2]
    ratio = min(input_height / height, input_width / width)
    new_width, new_height = int(width * ratio), int(height * ratio)
    canvas = np.full((input_height, input_width, 3), LETTERBOX_FILL, dtype=np.uint8)
    if new_width > 0 and new_height > 0:
        resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
        canvas[:new_height, :new_width] = resized
    planes = canvas.transpose(2, 0, 1)
    if reverse_channels:
        planes = planes[::-1]
    batch = np.ascontiguousarray(planes[None], dtype=np.float32)
    return batch, ratio


def yolox_grid(
    input_size: tuple[int, int], strides: tuple[int, ...] = YOLOX_STRIDES
) -> tuple[np.ndarray, np.ndarray]:
    """Anchor cell offsets (A, 2) int64 (x, y) and strides (A, 1) int64, row-major, x fastest."""
    input_height, input_width = input_size
    cells, cell_strides = [], []
    for stride in strides:
        xs, ys = np.meshgrid(np.arange(input_width // stride), np.arange(input_height // stride))
        cells.append(np.stack((xs, ys), axis=2).reshape(-1, 2))
        cell_strides.append(np.full((cells[-1].shape[0], 1), stride))
    return np.concatenate(cells).astype(np.int64), np.concatenate(cell_strides).astype(np.int64)


def decode_yolox(raw: np.ndarray, input_size: tuple[int, int], ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX output (1, A, 5+C) -> boxes (A, 4) float32 xyxy in image pixels, scores (A, C).

    Centres ``(p + cell) * stride``, sizes ``exp(p) * stride`` (computed in float64 and stored in
    float32, as the reference does), score ``objectness * class``, boxes divided by ``ratio``.
    """
    if raw.ndim == 3:
        if raw.shape[0] != 1:
            raise ValueError(f"YOLOX output must have batch 1, got shape {raw.shape}")
        raw = raw[0]
    cells, strides = yolox_grid(input_size)
    if raw.ndim != 2 or raw.shape[0] != cells.shape[0] or raw.shape[1] < 6:
        raise ValueError(
            f"YOLOX output of shape {raw.shape} does not match a {input_size[1]}x{input_size[0]} input "
            f"with strides {YOLOX_STRIDES}: expected ({cells.shape[0]}, 5 + classes)"
        )
    raw = raw.astype(np.float32)
    centres = ((raw[:, :2] + cells) * strides).astype(np.float32)
    sizes = (np.exp(raw[:, 2:4]) * strides).astype(np.float32)
    scores = raw[:, 4:5] * raw[:, 5:]
    boxes = np.empty_like(centres, shape=(raw.shape[0], 4))
    boxes[:, :2] = centres - sizes / 2.0
    boxes[:, 2:] = centres + sizes / 2.0
    boxes /= np.float32(ratio)
    return boxes, scores


def box_iou_plus_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box against (M, 4) others with the "+1" pixel convention, in the boxes' dtype."""
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (others[:, 2] - others[:, 0] + 1) * (others[:, 3] - others[:, 1] + 1)
    inter_width = np.maximum(0.0, np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]) + 1)
    inter_height = np.maximum(0.0, np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]) + 1)
    inter = inter_width * inter_height
    return inter / (area + areas - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS, "+1" areas; suppresses IoU > ``iou_threshold``. Kept indices, best score first."""
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(best)
        overlaps = box_iou_plus_one(boxes[best], boxes[order[1:]])
        order = order[1:][overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def person_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.45,
    candidate_threshold: float = 0.1,
) -> Detections:
    """Class-aware NMS of candidates > ``candidate_threshold``; persons scoring > ``score_threshold``.

    Only the person class can yield results, and NMS is per class, so running it on the person
    column alone gives exactly the reference's class-aware result. As in the reference, the final
    score test is made in float64 on the float32 scores: a score of ``float32(0.3)`` (slightly
    above 0.3) is kept, the next float32 below it is not.
    """
    person_scores = scores[:, PERSON_CLASS]
    candidates = person_scores > candidate_threshold
    candidate_boxes, candidate_scores = boxes[candidates], person_scores[candidates]
    keep = nms(candidate_boxes, candidate_scores, nms_threshold)
    kept_boxes = candidate_boxes[keep].astype(np.float64)
    kept_scores = candidate_scores[keep].astype(np.float64)
    confident = kept_scores > score_threshold
    return Detections(kept_boxes[confident].reshape(-1, 4), kept_scores[confident])


def filter_persons(
    detections: Detections, max_persons: int | None = None, min_box_size: float | None = None
) -> Detections:
    """Drop boxes whose shorter side is below ``min_box_size``; keep the ``max_persons`` largest.

    With ``max_persons`` the result is ordered by decreasing box area (ties keep score order).
    """
    boxes, scores = detections.boxes, detections.scores
    if min_box_size is not None:
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        large = sides >= min_box_size
        boxes, scores = boxes[large], scores[large]
    if max_persons is not None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        largest = np.argsort(-areas, kind="stable")[:max_persons]
        boxes, scores = boxes[largest], scores[largest]
    return Detections(boxes.reshape(-1, 4), scores)


def detect_persons(
    backend: Backend,
    image: np.ndarray,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.45,
    candidate_threshold: float = 0.1,
    reverse_channels: bool = False,
) -> Detections:
    """Run YOLOX on an HWC uint8 image and return person boxes.

    The image's channel order must be the model's, unless ``reverse_channels`` (e.g. an RGB image
    for a detector trained on BGR): then the channels are swapped inside :func:`letterbox`.
    """
    input_size = backend.input_size
    batch, ratio = letterbox(image, input_size, reverse_channels)
    outputs = backend.run(batch)
    boxes, scores = decode_yolox(outputs[0], input_size, ratio)
    return person_boxes(boxes, scores, score_threshold, nms_threshold, candidate_threshold)
