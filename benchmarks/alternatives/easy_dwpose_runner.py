"""Benchmark worker: easy_dwpose's ``DWposeDetector`` (640 detector configurations only).

easy_dwpose's constructor downloads its own two ONNX files from the Hub and its detector
hard-codes a 640 input, so it cannot run offline as published. Here its ``__call__`` (resize,
detection, per-person pose loop, formatting, drawing, resize back) runs unchanged on an object
whose ``Wholebody`` was built from the same local files as every other tool; the constructor's
download is the only part skipped. Its package imports torch only for ``torch.inference_mode``
around ONNX calls, so a no-op stand-in replaces torch (and ``huggingface_hub``, never called).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common


def _install_hub_stub() -> None:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        stub = types.ModuleType("huggingface_hub")

        def hf_hub_download(*args, **kwargs):
            raise RuntimeError("easy_dwpose's download is not available in the offline benchmark")

        stub.hf_hub_download = hf_hub_download
        sys.modules["huggingface_hub"] = stub


class EasyDwpose(common.Tool):
    name = "easy_dwpose"

    def __init__(self, spec: dict, timer: common.StageTimer) -> None:
        super().__init__(spec, timer)
        common.install_torch_stub()
        _install_hub_stub()
        from easy_dwpose import dwpose
        from easy_dwpose.body_estimation import Wholebody, detector, pose, utils, wholebody

        self.detector = dwpose.DWposeDetector.__new__(dwpose.DWposeDetector)
        self.detector.pose_estimation = Wholebody(
            model_det=spec["det_model"], model_pose=spec["pose_model"], device="cpu"
        )
        session_det = self.detector.pose_estimation.session_det
        common.time_session_runs(session_det, timer)
        common.time_session_runs(self.detector.pose_estimation.session_pose, timer)
        self.det_input_hw = tuple(int(v) for v in session_det.get_inputs()[0].shape[2:])
        if self.det_input_hw != (640, 640):
            raise ValueError("easy_dwpose hard-codes a 640x640 detector input")
        if spec.get("fixed_boxes") is not None:
            self.injector = common.BoxInjectingSession(session_det)
            self.detector.pose_estimation.session_det = self.injector
        wholebody.inference_detector = timer.wrap("detect", detector.inference_detector)
        pose.preprocess = timer.wrap("crop", pose.preprocess)
        pose.inference = timer.wrap("pose", pose.inference)
        pose.postprocess = timer.wrap("decode", pose.postprocess)
        dwpose.resize_image = timer.wrap("resize", utils.resize_image)
        self.draw = timer.wrap("render", dwpose.draw_openpose)
        self.resolution = int(spec.get("detect_resolution", 512))

    def set_fixed_boxes(self, boxes: np.ndarray, detection_hw: tuple[int, int]) -> None:
        self.injector.next_boxes = boxes
        self.injector.next_ratio = common.letterbox_ratio(detection_hw, self.det_input_hw)

    def process(self, image: np.ndarray) -> common.ToolOutput:
        control_map = self.detector(
            image, detect_resolution=self.resolution, draw_pose=self.draw, output_type="np"
        )
        keypoints, scores = self.timer.last_result["decode"]
        return common.ToolOutput(keypoints, scores, control_map)


if __name__ == "__main__":
    common.serve(EasyDwpose)
