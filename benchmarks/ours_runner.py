"""Benchmark worker: dwpose-ctrl's :class:`~dwpose_ctrl.detector.DWposeDetector`.

Run as ``python -m benchmarks.ours_runner`` (the harness does it). Per-stage times come from
wrapping the pipeline's own stage functions in this process only; the library has no timing
code. Options (setup ``options``): ``mode`` ("default" or "reference") and ``per_person`` (run
the pose model one person at a time: the plain loop that batched results must equal).
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.alternatives import common


class BoxInjectingBackend:
    """A detector :class:`~dwpose_ctrl.runtime.Backend` that runs the network, then reports fixed boxes."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.next_boxes = np.zeros((0, 4))
        self.next_ratio = 1.0

    @property
    def input_size(self) -> tuple[int, int]:
        return self.backend.input_size

    @property
    def dynamic_batch(self) -> bool:
        return self.backend.dynamic_batch

    @property
    def device(self) -> str:
        return self.backend.device

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self.backend.run(batch)
        num_classes = outputs[0].shape[-1] - 5
        return [common.encode_yolox_output(self.next_boxes, self.input_size, self.next_ratio, num_classes)]


class PerPersonBackend:
    """A pose backend that declares a fixed batch of 1, so the pipeline runs one person at a time."""

    def __init__(self, backend) -> None:
        self.backend = backend

    @property
    def input_size(self) -> tuple[int, int]:
        return self.backend.input_size

    @property
    def dynamic_batch(self) -> bool:
        return False

    @property
    def device(self) -> str:
        return self.backend.device

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.backend.run(batch)


class Ours(common.Tool):
    name = "ours"

    def __init__(self, spec: dict, timer: common.StageTimer) -> None:
        super().__init__(spec, timer)
        import dwpose_ctrl.detector as pipeline
        import dwpose_ctrl.openpose as openpose
        import dwpose_ctrl.render as render

        options = spec.get("options", {})
        self.detector = pipeline.DWposeDetector(
            det_model=spec["det_model"], pose_model=spec["pose_model"], mode=options.get("mode", "default")
        )
        det_backend, pose_backend = self.detector.det_backend, self.detector.pose_backend
        det_backend.input_size, pose_backend.input_size  # noqa: B018 - create both sessions now
        common.time_session_runs(det_backend, timer)
        common.time_session_runs(pose_backend, timer)
        self.injector = None
        if spec.get("fixed_boxes") is not None:
            self.injector = BoxInjectingBackend(det_backend)
            self.detector._det_backend = self.injector
        if options.get("per_person"):
            self.detector._pose_backend = PerPersonBackend(pose_backend)
        cls = pipeline.DWposeDetector
        pipeline.resize_to_resolution = timer.wrap("resize", pipeline.resize_to_resolution)
        cls._detect_images = timer.wrap("detect", cls._detect_images)
        pipeline.build_crops = timer.wrap("crop", pipeline.build_crops)
        cls._run_pose = timer.wrap("pose", cls._run_pose)
        pipeline.decode_simcc = timer.wrap("decode", pipeline.decode_simcc)
        pipeline.to_image_pixels = timer.wrap("decode", pipeline.to_image_pixels)
        for module in (pipeline, openpose, render):  # wherever the pipeline looks the names up
            for name in ("to_openpose", "draw_openpose"):
                if hasattr(module, name):
                    setattr(module, name, timer.wrap("render", getattr(module, name)))
        cls.estimate_arrays = timer.wrap("estimate", cls.estimate_arrays)
        self.resolution = int(spec.get("detect_resolution", 512))
        self.det_inputs: list[np.ndarray] = []
        self.pose_inputs: list[np.ndarray] = []
        pipeline.build_crops = self._keep_crops(pipeline.build_crops)

    def _keep_crops(self, build_crops):
        def keeping(*args, **kwargs):
            crops = build_crops(*args, **kwargs)
            self.pose_inputs.append(crops.inputs)
            return crops

        return keeping

    def set_fixed_boxes(self, boxes: np.ndarray, detection_hw: tuple[int, int]) -> None:
        self.injector.next_boxes = boxes
        self.injector.next_ratio = common.letterbox_ratio(detection_hw, self.injector.input_size)

    def process(self, image: np.ndarray) -> common.ToolOutput:
        self.pose_inputs.clear()
        control_map = self.detector(
            image, detect_resolution=self.resolution, image_resolution=self.resolution, output_type="np"
        )
        (poses,) = self.timer.last_result["estimate"]
        self.timer.totals.pop("estimate", None)
        self.last_pose_inputs = list(self.pose_inputs)
        return common.ToolOutput(poses.keypoints, poses.scores, control_map)

    def measure_networks(self, images: list[tuple[str, np.ndarray]], repeats: int = 3) -> dict:
        """Seconds the two networks alone need per image: one detector run plus the pose runs
        (batched, and one person at a time), on inputs prepared beforehand (median of ``repeats``)."""
        from dwpose_ctrl.person_detection import letterbox
        from dwpose_ctrl.resize import resize_to_resolution

        det_backend = self.detector.det_backend
        det_backend = getattr(det_backend, "backend", det_backend)
        pose_backend = self.detector.pose_backend
        pose_backend = getattr(pose_backend, "backend", pose_backend)
        result: dict[str, list[float]] = {"detector_s": [], "pose_batched_s": [], "pose_per_person_s": []}
        for name, image in images:
            self.set_fixed_boxes_for(name, image)
            self.process(image)
            crops = np.concatenate(self.last_pose_inputs) if self.last_pose_inputs else None
            det_input, _ = letterbox(resize_to_resolution(image, self.resolution), det_backend.input_size)
            timings = {key: [] for key in result}
            for _ in range(repeats):
                start = time.perf_counter()
                det_backend.run(det_input)
                timings["detector_s"].append(time.perf_counter() - start)
                if crops is None:
                    timings["pose_batched_s"].append(0.0)
                    timings["pose_per_person_s"].append(0.0)
                    continue
                start = time.perf_counter()
                if pose_backend.dynamic_batch:
                    pose_backend.run(crops)
                else:
                    for index in range(crops.shape[0]):
                        pose_backend.run(crops[index : index + 1])
                timings["pose_batched_s"].append(time.perf_counter() - start)
                start = time.perf_counter()
                for index in range(crops.shape[0]):
                    pose_backend.run(crops[index : index + 1])
                timings["pose_per_person_s"].append(time.perf_counter() - start)
            for key, values in timings.items():
                result[key].append(float(np.median(values)))
        return result

    def set_fixed_boxes_for(self, name: str, image: np.ndarray) -> None:
        fixed = self.spec.get("fixed_boxes")
        if fixed is not None:
            self.set_fixed_boxes(
                np.asarray(fixed[name], dtype=np.float64).reshape(-1, 4),
                common.detection_shape(image.shape[0], image.shape[1], self.resolution),
            )


if __name__ == "__main__":
    common.serve(Ours)
