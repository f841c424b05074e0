"""Benchmark worker: the reference ControlNet annotator, run through its own published functions.

``dwposes==0.1.0`` carries the annotator's ``onnxdet.py``, ``onnxpose.py``, ``util.py`` and its
``DWposeDetector`` unchanged (SPEC section 12). Its package imports torch only for
``torch.no_grad`` around ONNX calls, so a no-op stand-in is installed instead of torch. The one
change: the annotator hard-codes a 640 detector input, so for a 416 detector its
``inference_detector`` is replaced by the same steps reading the input size from the model.
Per-stage times come from wrapping the module functions the annotator calls (no code copied).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import reference_detector


def _detector_for_any_input_size(onnxdet):
    """The annotator's ``inference_detector`` with the input size read from the model."""
    return functools.partial(reference_detector.detect_at_model_size, onnxdet)


class ReferenceLoop(common.Tool):
    name = "reference"

    def __init__(self, spec: dict, timer: common.StageTimer) -> None:
        super().__init__(spec, timer)
        common.install_torch_stub()
        import DWPoses
        from DWPoses import onnxdet, onnxpose, wholebody

        self.annotator = DWPoses.DWposeDetector(det=spec["det_model"], pose=spec["pose_model"])
        session_det = self.annotator.pose_estimation.session_det
        common.time_session_runs(session_det, timer)
        common.time_session_runs(self.annotator.pose_estimation.session_pose, timer)
        self.det_input_hw = tuple(int(v) for v in session_det.get_inputs()[0].shape[2:])
        if spec.get("fixed_boxes") is not None:
            self.injector = common.BoxInjectingSession(session_det)
            self.annotator.pose_estimation.session_det = self.injector
        detect = wholebody.inference_detector
        if self.det_input_hw != (640, 640):
            detect = _detector_for_any_input_size(onnxdet)
        wholebody.inference_detector = timer.wrap("detect", detect)
        onnxpose.preprocess = timer.wrap("crop", onnxpose.preprocess)
        onnxpose.inference = timer.wrap("pose", onnxpose.inference)
        onnxpose.postprocess = timer.wrap("decode", onnxpose.postprocess)
        self.draw_pose = timer.wrap("render", DWPoses.draw_pose)
        self.resize = timer.wrap("resize", common.resize_for_detection)
        self.resolution = int(spec.get("detect_resolution", 512))

    def set_fixed_boxes(self, boxes: np.ndarray, detection_hw: tuple[int, int]) -> None:
        self.injector.next_boxes = boxes
        self.injector.next_ratio = common.letterbox_ratio(detection_hw, self.det_input_hw)

    def process(self, image: np.ndarray) -> common.ToolOutput:
        detection_image = self.resize(image, self.resolution)
        pose = self.annotator(detection_image)
        height, width = detection_image.shape[:2]
        control_map = self.draw_pose(pose, height, width)
        keypoints, scores = self.timer.last_result["decode"]
        return common.ToolOutput(keypoints, scores, control_map)


if __name__ == "__main__":
    common.serve(ReferenceLoop)
