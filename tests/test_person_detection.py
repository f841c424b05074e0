"""YOLOX pre/post-processing: letterbox, grid decode, "+1" NMS, thresholds, person filters."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_graphs import constant_yolox, yolox_raw

from dwpose_ctrl.person_detection import (
    Detections,
    box_iou_plus_one,
    decode_yolox,
    detect_persons,
    filter_persons,
    letterbox,
    nms,
    person_boxes,
    yolox_grid,
)
from dwpose_ctrl.runtime import OnnxBackend

INPUT = (64, 64)  # 8x8 + 4x4 + 2x2 = 84 anchors


def anchor_of(stride: int, cell_x: int, cell_y: int, input_size=INPUT) -> int:
    cells, strides = yolox_grid(input_size)
    match = np.flatnonzero((strides[:, 0] == stride) & (cells[:, 0] == cell_x) & (cells[:, 1] == cell_y))
    return int(match[0])


def test_grid_is_row_major_x_fastest_per_stride():
    cells, strides = yolox_grid(INPUT)
    assert cells.shape == (84, 2)
    np.testing.assert_array_equal(cells[:3], [[0, 0], [1, 0], [2, 0]])
    np.testing.assert_array_equal(cells[8], [0, 1])
    np.testing.assert_array_equal(strides[[0, 63, 64, 79, 80, 83], 0], [8, 8, 16, 16, 32, 32])
    np.testing.assert_array_equal(cells[83], [1, 1])


def test_letterbox_resizes_top_left_and_pads_with_114():
    image = np.full((20, 40, 3), 7, np.uint8)
    image[:, :, 2] = 200
    batch, ratio = letterbox(image, INPUT)
    assert ratio == 1.6
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    np.testing.assert_array_equal(
        batch[0, :, :32, :], np.broadcast_to(np.array([7, 7, 200.0])[:, None, None], (3, 32, 64))
    )
    assert (batch[0, :, 32:, :] == 114).all()


def test_decode_known_raw_output_gives_known_box():
    anchor = anchor_of(8, 3, 2)
    raw = yolox_raw({anchor: (0.5, 0.25, 0.0, float(np.log(2)), 1.0, 0.9)}, INPUT)
    boxes, scores = decode_yolox(raw, INPUT, ratio=0.5)
    # centre ((3.5) * 8, (2.25) * 8) = (28, 18); size (8, 16); then divided by 0.5
    np.testing.assert_array_equal(boxes[anchor], np.array([48, 20, 64, 52], np.float32))
    assert scores[anchor, 0] == np.float32(0.9)
    assert boxes.dtype == np.float32


def test_decode_refuses_output_of_another_input_size():
    with pytest.raises(ValueError, match="does not match a 64x64 input"):
        decode_yolox(np.zeros((1, 100, 6), np.float32), INPUT, 1.0)


@pytest.mark.parametrize(
    ("box_b", "suppressed"),
    [
        ([0, 0, 4, 8], False),  # inter 45, union 100 (with +1): IoU exactly 0.45 is kept
        ([0, 0, 4, 9], True),  # inter 50, union 100: 0.5 suppressed
        ([0, 0, 5, 8], True),  # inter 54, union 100: 0.54 suppressed
    ],
)
def test_nms_iou_edge_uses_plus_one_areas(box_b, suppressed):
    boxes = np.array([[0, 0, 9, 9], box_b], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8], np.float32), 0.45)
    assert list(keep) == ([0] if suppressed else [0, 1])


def test_nms_plus_one_rule_suppresses_what_plain_iou_keeps():
    a, b = np.array([0, 0, 2, 2], np.float32), np.array([[1, 0, 3, 2]], np.float32)
    assert box_iou_plus_one(a, b)[0] == np.float32(0.5)  # plain IoU would be 2 / 6
    assert list(nms(np.vstack([a, b]), np.array([0.5, 0.9], np.float32), 0.45)) == [1]


def test_nms_keeps_descending_score_order():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]], np.float32)
    assert list(nms(boxes, np.array([0.2, 0.9, 0.5], np.float32), 0.45)) == [1, 2, 0]


def test_score_threshold_edge_is_float64_comparison_of_float32_scores():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]], np.float32)
    below = np.nextafter(np.float32(0.3), np.float32(0))
    scores = np.array([[np.float32(0.3)], [below], [np.float32(0.31)]], np.float32)
    found = person_boxes(boxes, scores)
    np.testing.assert_array_equal(found.scores, [np.float32(0.31), np.float32(0.3)])
    np.testing.assert_array_equal(found.boxes, boxes[[2, 0]])
    assert found.boxes.dtype == np.float64


def test_nms_is_class_aware_and_only_persons_are_returned():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([[0.5, 0.0], [0.0, 0.95]], np.float32)  # box 1 is a confident non-person
    found = person_boxes(boxes, scores)
    np.testing.assert_array_equal(found.boxes, [[0, 0, 10, 10]])
    np.testing.assert_array_equal(found.scores, [np.float32(0.5)])


def test_filters_keep_largest_persons_and_drop_small_ones():
    detections = Detections(
        np.array([[0, 0, 10, 10], [0, 0, 50, 40], [0, 0, 30, 100], [0, 0, 5, 200]], np.float64),
        np.array([0.9, 0.8, 0.7, 0.6]),
    )
    largest = filter_persons(detections, max_persons=2)
    np.testing.assert_array_equal(largest.scores, [0.7, 0.8])
    large = filter_persons(detections, min_box_size=10)
    np.testing.assert_array_equal(large.scores, [0.9, 0.8, 0.7])
    both = filter_persons(detections, max_persons=1, min_box_size=35)
    np.testing.assert_array_equal(both.boxes, [[0, 0, 50, 40]])
    assert len(filter_persons(Detections.empty(), max_persons=3)) == 0


def test_detections_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Detections(np.zeros((2, 3)), np.zeros(2))


def test_known_graph_output_through_onnxruntime(tmp_path):
    """A constant-output YOLOX graph gives known boxes for an image twice the input size."""
    person = anchor_of(16, 1, 2)
    weak = anchor_of(8, 6, 6)
    overlapping = anchor_of(16, 1, 2) + 1  # cell (2, 2): same size box shifted by 16 px
    raw = yolox_raw(
        {
            person: (0.5, 0.5, float(np.log(2)), float(np.log(2)), 1.0, 0.8),
            overlapping: (0.0, 0.5, float(np.log(2)), float(np.log(2)), 1.0, 0.7),
            weak: (0.0, 0.0, 0.0, 0.0, 1.0, float(np.nextafter(np.float32(0.3), np.float32(0)))),
            anchor_of(32, 1, 1): (0.5, 0.5, 0.0, 0.0, 1.0, float(np.float32(0.3))),
        },
        INPUT,
    )
    backend = OnnxBackend(constant_yolox(tmp_path / "yolox.onnx", raw, INPUT))
    image = np.zeros((128, 96, 3), np.uint8)  # ratio 0.5
    found = detect_persons(backend, image)
    # centre (1.5 * 16, 2.5 * 16) = (24, 40), size 32: (8, 24, 40, 56) / 0.5; the overlapping box
    # (IoU with +1 areas 33*25/(2*33*33 - 33*25) = 0.61) is suppressed; the weak one scores just
    # below float32(0.3) and is dropped; the stride-32 box scoring exactly float32(0.3) is kept
    np.testing.assert_array_equal(found.boxes, [[16, 48, 80, 112], [64, 64, 128, 128]])
    np.testing.assert_array_equal(found.scores, [np.float32(0.8), np.float32(0.3)])
