"""The reference annotator's person detector at the model's own input size.

The annotator's ``onnxdet.inference_detector`` hard-codes a 640 input; this runs the same steps
with the annotator's own ``preprocess``, ``demo_postprocess`` and ``multiclass_nms``, reading the
input size from the session. Used by the benchmark's reference loop and by the oracle tests.
Needs only numpy and the ``onnxdet`` module passed in (no project code), so it also runs in the
alternatives' environment.
"""

from __future__ import annotations

import numpy as np


def detect_at_model_size(onnxdet, session, image: np.ndarray) -> np.ndarray:
    """Person boxes (N, 4) xyxy as the annotator computes them, for any YOLOX input size."""
    input_shape = tuple(int(v) for v in session.get_inputs()[0].shape[2:])
    padded, ratio = onnxdet.preprocess(image, input_shape)
    output = session.run(None, {session.get_inputs()[0].name: padded[None, :, :, :]})
    predictions = onnxdet.demo_postprocess(output[0], input_shape)[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    boxes_xyxy = np.ones_like(boxes)
    boxes_xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
    boxes_xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
    boxes_xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
    boxes_xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
    boxes_xyxy /= ratio
    dets = onnxdet.multiclass_nms(boxes_xyxy, scores, nms_thr=0.45, score_thr=0.1)
    if dets is None:
        return np.array([])
    keep = (dets[:, 4] > 0.3) & (dets[:, 5] == 0)
    return dets[keep, :4]
