"""Benchmark worker: rtmlib's ``Wholebody`` solution (YOLOX + RTMPose, onnxruntime backend).

Given the same local ONNX files and the same RGB detection image as every other tool. Its
detector score threshold is set to the reference's 0.3 (rtmlib's default 0.7 runs fewer
persons). Per-stage times come from wrapping rtmlib's own methods. Its map is drawn with its
own ``draw_skeleton`` (COCO-WholeBody style) on a black canvas. rtmlib 0.0.16 scores a keypoint
with the mean of the two SimCC maxima (the reference takes the minimum), so its scores differ.

rtmlib's own detectors are person-only; given an 80-class COCO YOLOX its ``"human"`` mode
returns the boxes of every class. So this worker asks for ``"multiclass"`` results and keeps the
person class before calling the pose model, which is what ``Wholebody.__call__`` does otherwise
(detector, then pose model on the boxes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


class Rtmlib(common.Tool):
    name = "rtmlib"

    def __init__(self, spec: dict, timer: common.StageTimer) -> None:
        super().__init__(spec, timer)
        import onnxruntime as ort
        import rtmlib
        from rtmlib.tools.base import BaseTool

        det_hw = tuple(ort.InferenceSession(spec["det_model"]).get_inputs()[0].shape[2:])
        pose_hw = tuple(ort.InferenceSession(spec["pose_model"]).get_inputs()[0].shape[2:])
        self.det_input_hw = (int(det_hw[0]), int(det_hw[1]))
        self.solution = rtmlib.Wholebody(
            det=spec["det_model"],
            det_input_size=self.det_input_hw,
            pose=spec["pose_model"],
            pose_input_size=(int(pose_hw[1]), int(pose_hw[0])),
            backend="onnxruntime",
            device="cpu",
        )
        self.solution.det_model.score_thr = 0.3
        self.solution.det_model.det_mode = "multiclass"
        common.time_session_runs(self.solution.det_model.session, timer)
        common.time_session_runs(self.solution.pose_model.session, timer)
        if spec.get("fixed_boxes") is not None:
            self.injector = common.BoxInjectingSession(self.solution.det_model.session)
            self.solution.det_model.session = self.injector
        rtmlib.YOLOX.__call__ = timer.wrap("detect", rtmlib.YOLOX.__call__)
        rtmlib.RTMPose.preprocess = timer.wrap("crop", rtmlib.RTMPose.preprocess)
        rtmlib.RTMPose.inference = timer.wrap("pose", BaseTool.inference)
        rtmlib.RTMPose.postprocess = timer.wrap("decode", rtmlib.RTMPose.postprocess)
        self.draw = timer.wrap("render", rtmlib.draw_skeleton)
        self.resize = timer.wrap("resize", common.resize_for_detection)
        self.resolution = int(spec.get("detect_resolution", 512))

    def set_fixed_boxes(self, boxes: np.ndarray, detection_hw: tuple[int, int]) -> None:
        self.injector.next_boxes = boxes
        self.injector.next_ratio = common.letterbox_ratio(detection_hw, self.det_input_hw)

    def process(self, image: np.ndarray) -> common.ToolOutput:
        detection_image = self.resize(image, self.resolution)
        boxes, classes = self.solution.det_model(detection_image)
        person_boxes = np.asarray(boxes).reshape(-1, 4)[np.asarray(classes).reshape(-1) == 0]
        keypoints, scores = self.solution.pose_model(detection_image, bboxes=person_boxes)
        canvas = np.zeros_like(detection_image)
        control_map = self.draw(canvas, keypoints, scores, kpt_thr=0.3)
        return common.ToolOutput(keypoints, scores, control_map)


if __name__ == "__main__":
    common.serve(Rtmlib)
