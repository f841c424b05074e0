"""The public facade: :class:`DWposeDetector` (images in, control maps or typed persons out).

Each numeric step lives in its own module (inputs, resize, person_detection, topdown, codec,
openpose, render); this one only chains them, holds the options and the lazily created runtimes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from dwpose_ctrl.arguments import check_flag, check_positive_int
from dwpose_ctrl.codec import decode_simcc
from dwpose_ctrl.inputs import to_rgb_list
from dwpose_ctrl.keypoints import NUM_KEYPOINTS, Person
from dwpose_ctrl.openpose import OpenPoseFrame, check_visibility_threshold, persons_to_openpose, to_openpose
from dwpose_ctrl.person_detection import (
    Detections,
    decode_yolox,
    detect_persons,
    filter_persons,
    letterbox,
    person_boxes,
)
from dwpose_ctrl.placement import (
    BACKENDS,
    RuntimeChoice,
    RuntimeInfo,
    choose_runtime,
    describe_backend,
    device_kind,
    normalize_dtype,
    probe_machine,
)
from dwpose_ctrl.render import RenderOptions, render_map
from dwpose_ctrl.resize import resize_to_resolution, resolution_size
from dwpose_ctrl.runtime import Backend, create_backend
from dwpose_ctrl.topdown import build_crops, to_image_pixels
from dwpose_ctrl.weights import (
    ModelFile,
    check_pose_geometry,
    fetch_files,
    find_registered,
    resolve_model,
    resolve_models,
)

Mode = Literal["default", "reference"]
MODES = ("default", "reference")
OUTPUT_TYPES = ("pil", "np")


@dataclass(frozen=True)
class Poses:
    """All persons of one image in the pixels of the image they were estimated on.

    ``keypoints`` (P, 133, 2) float64, ``scores`` (P, 133) float32, ``boxes`` (P, 4) float64 and
    ``box_scores`` (one float, or ``None`` for the reference mode's whole-image box).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: tuple[float | None, ...]

    def __len__(self) -> int:
        return len(self.box_scores)

    def to_persons(self, scale_x: float = 1.0, scale_y: float = 1.0) -> list[Person]:
        """Typed per-person results, coordinates multiplied by (``scale_x``, ``scale_y``)."""
        keypoints = self.keypoints * np.array([scale_x, scale_y])
        boxes = self.boxes * np.array([scale_x, scale_y, scale_x, scale_y])
        return [
            Person(keypoints=keypoints[i], scores=self.scores[i].copy(), box=boxes[i], box_score=score)
            for i, score in enumerate(self.box_scores)
        ]


def _check_threshold(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return value


def _check_rgb_array(image, method: str) -> None:
    if not (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    ):
        raise ValueError(f"{method} needs RGB uint8 (H, W, 3) arrays; use estimate() for other inputs")


class DWposeDetector:
    """DWPose whole-body pose estimation and OpenPose-style control maps.

    ``det_model`` / ``pose_model``: a path to an ONNX file or a registered name (see
    :mod:`dwpose_ctrl.weights`); ``None`` means the official ``yolox_l.onnx`` and
    ``dw-ll_ucoco_384.onnx``. ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    ``backend``: ``"auto"`` (onnxruntime on the CPU; on CUDA onnxruntime's CUDA provider when it
    works, else the torch backend; torch on MPS), ``"onnxruntime"`` or ``"torch"``; ``dtype``
    ``"float16"``/``"bfloat16"`` is a faster torch-on-GPU mode; ``providers`` selects
    onnxruntime execution providers (``["CoreMLExecutionProvider"]``, ``"directml"``, ...); a
    device that cannot be used is an error unless ``allow_cpu_fallback=True`` (see
    :mod:`dwpose_ctrl.placement` and :meth:`runtime_info`). ``mode="reference"`` reproduces the
    DWPose ControlNet annotator bit for bit (RGB into YOLOX, a whole-image box when nobody is found);
    ``mode="default"`` feeds YOLOX the BGR image it was trained on and returns nobody (an empty
    map) when nobody is found. Thresholds default to the reference values: ``score_threshold``
    (person boxes), ``nms_threshold`` and ``keypoint_threshold`` (a body joint is drawn when its
    score is > it, a hand or face point unless its score is < it; in [0, 1)). ``max_persons`` keeps
    the largest boxes, ``min_box_size`` drops boxes whose shorter side (in input-image pixels) is
    smaller. Runtimes are created on first use and reused.
    """

    def __init__(
        self,
        det_model: str | os.PathLike | None = None,
        pose_model: str | os.PathLike | None = None,
        device: str = "cpu",
        backend: str = "auto",
        mode: Mode = "default",
        *,
        dtype: str = "float32",
        providers: Sequence[str] | str | None = None,
        allow_cpu_fallback: bool = False,
        score_threshold: float = 0.3,
        nms_threshold: float = 0.45,
        keypoint_threshold: float = 0.3,
        max_persons: int | None = None,
        min_box_size: float | None = None,
        local_dir: str | os.PathLike | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        device_kind(device)
        if max_persons is not None:
            max_persons = check_positive_int("max_persons", max_persons)
        self.mode: Mode = mode
        self.backend_name = backend
        self.device = device
        self.dtype = normalize_dtype(dtype)
        self.providers = providers
        self.allow_cpu_fallback = allow_cpu_fallback
        self.score_threshold = _check_threshold("score_threshold", score_threshold)
        self.nms_threshold = _check_threshold("nms_threshold", nms_threshold)
        self.keypoint_threshold = check_visibility_threshold(keypoint_threshold, "keypoint_threshold")
        self.max_persons = max_persons
        self.min_box_size = (
            None if min_box_size is None else _check_threshold("min_box_size", min_box_size, 0, np.inf)
        )
        self.runtime_choice: RuntimeChoice = self._choose_runtime(device)  # before any download
        self.det_model_path, self.pose_model_path = resolve_models(det_model, pose_model, local_dir)
        self._det_backend: Backend | None = None
        self._pose_backend: Backend | None = None

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_dir: str | os.PathLike = "yzd-v/DWPose",
        det_filename: str = "yolox_l.onnx",
        pose_filename: str = "dw-ll_ucoco_384.onnx",
        *,
        cache_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **kwargs,
    ) -> DWposeDetector:
        """Load both models from a local folder or a Hugging Face repo; ``kwargs`` go to the constructor."""
        folder = os.fspath(repo_id_or_dir)
        if os.path.isdir(folder):
            det_path = resolve_model(os.path.join(folder, det_filename), "detector")
            pose_path = resolve_model(os.path.join(folder, pose_filename), "pose")
        else:
            hub = {
                "cache_dir": cache_dir,
                "revision": revision,
                "token": token,
                "local_files_only": local_files_only,
            }
            files = {"detector": det_filename, "pose": pose_filename}
            entries = {
                role: find_registered(folder, name) or ModelFile(name, role, folder, name, None, None)
                for role, name in files.items()
            }
            paths = fetch_files(entries, registered_names=False, **hub)
            det_path, pose_path = paths["detector"], paths["pose"]
        return cls(det_model=det_path, pose_model=pose_path, **kwargs)

    # runtimes

    def _choose_runtime(self, device: str) -> RuntimeChoice:
        """Decide where the networks run (warns about a fallback the user allowed)."""
        needs_accelerators = device_kind(device)[0] != "cpu" or self.backend_name == "torch"
        choice = choose_runtime(
            probe_machine(accelerators=needs_accelerators),
            self.backend_name,
            device,
            self.dtype,
            self.providers,
            self.allow_cpu_fallback,
        )
        if choice.warning:
            warnings.warn(choice.warning, RuntimeWarning, stacklevel=3)
        return choice

    def _create_backend(self, path: os.PathLike, role: str) -> Backend:
        choice = self.runtime_choice
        return create_backend(
            path, choice.backend, choice.device, role, dtype=choice.dtype, providers=choice.providers or None
        )

    @property
    def det_backend(self) -> Backend:
        """The person detector's runtime (created on first use)."""
        if self._det_backend is None:
            self._det_backend = self._create_backend(self.det_model_path, "detector")
        return self._det_backend

    @property
    def pose_backend(self) -> Backend:
        """The pose model's runtime (created on first use)."""
        if self._pose_backend is None:
            self._pose_backend = self._create_backend(self.pose_model_path, "pose")
        return self._pose_backend

    def runtime_info(self) -> RuntimeInfo:
        """What runs where, in which dtype (creates the runtimes if they are not yet created)."""
        return RuntimeInfo(
            self.backend_name,
            self.device,
            self.runtime_choice,
            describe_backend(self.det_backend),
            describe_backend(self.pose_backend),
        )

    def to(self, device: str) -> DWposeDetector:
        """Move to ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (runtimes re-created on next use)."""
        device_kind(device)
        if device != self.device:
            self.runtime_choice = self._choose_runtime(device)
            self.device = device
            self._det_backend = None
            self._pose_backend = None
        return self

    # pipeline

    def detect(self, image: np.ndarray) -> Detections:
        """Person boxes in an RGB uint8 image (RGB or BGR into YOLOX depending on the mode)."""
        return self._detect_images([image])[0]

    def _detect_images(self, images: list[np.ndarray]) -> list[Detections]:
        """Person boxes of each image: one YOLOX run for all when its batch is dynamic, else one each.

        Every letterboxed input has the model's fixed size, so they always stack into one batch.
        """
        backend = self.det_backend
        bgr = self.mode != "reference"  # YOLOX was trained on BGR; the reference feeds RGB
        if len(images) == 1 or not backend.dynamic_batch:
            return [
                detect_persons(backend, image, self.score_threshold, self.nms_threshold, reverse_channels=bgr)
                for image in images
            ]
        input_size = backend.input_size
        letterboxed = [letterbox(image, input_size, reverse_channels=bgr) for image in images]
        raw = backend.run(np.concatenate([batch for batch, _ in letterboxed]))[0]
        detections = []
        for index, (_, ratio) in enumerate(letterboxed):
            boxes, scores = decode_yolox(raw[index : index + 1], input_size, ratio)
            detections.append(person_boxes(boxes, scores, self.score_threshold, self.nms_threshold))
        return detections

    def _run_pose(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        backend = self.pose_backend
        if backend.dynamic_batch:
            outputs = backend.run(inputs)
        else:
            per_person = [backend.run(inputs[i : i + 1]) for i in range(inputs.shape[0])]
            outputs = [np.concatenate([out[k] for out in per_person]) for k in range(len(per_person[0]))]
        if len(outputs) != 2:
            raise ValueError(
                f"{self.pose_model_path}: the pose model gave {len(outputs)} outputs, "
                "expected simcc_x and simcc_y"
            )
        simcc_x, simcc_y = outputs
        if simcc_x.ndim != 3 or simcc_x.shape[1] != NUM_KEYPOINTS:
            raise ValueError(
                f"{self.pose_model_path}: simcc_x has shape {simcc_x.shape}; a whole-body model gives "
                f"(N, {NUM_KEYPOINTS}, bins)"
            )
        # models declaring symbolic output sizes are only checked once their outputs are known
        check_pose_geometry(
            self.pose_model_path.name,
            backend.input_size,
            (simcc_x.shape[1], simcc_y.shape[1]),
            (simcc_x.shape[2], simcc_y.shape[2]),
        )
        return simcc_x, simcc_y

    def _pose_images(
        self, images: list[np.ndarray], boxes: list[np.ndarray], box_scores: list[tuple[float | None, ...]]
    ) -> list[Poses]:
        """Keypoints inside each image's (N_i, 4) boxes: one pose-model batch for all persons of all
        images (one run per person when the model's batch is fixed at 1)."""
        counts = [len(image_boxes) for image_boxes in boxes]
        if sum(counts) == 0:
            empty = (np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS), np.float32))
            return [Poses(*empty, image_boxes, ()) for image_boxes in boxes]
        model_size = self.pose_backend.input_size
        crops = [
            build_crops(image, image_boxes, model_size)
            for image, image_boxes in zip(images, boxes, strict=True)
        ]
        locations, scores = decode_simcc(*self._run_pose(np.concatenate([crop.inputs for crop in crops])))
        results = []
        offsets = np.cumsum([0, *counts])
        for index, crop in enumerate(crops):
            start, stop = offsets[index], offsets[index + 1]
            keypoints = to_image_pixels(locations[start:stop], model_size, crop.centers, crop.scales)
            results.append(Poses(keypoints, scores[start:stop], boxes[index], box_scores[index]))
        return results

    def estimate_boxes(
        self, image: np.ndarray, boxes, box_scores: Sequence[float | None] | None = None
    ) -> Poses:
        """Keypoints of one person per given box, in the pixels of an RGB uint8 HWC image.

        ``boxes`` is (N, 4) ``x1, y1, x2, y2`` (any array-like; N may be 0), ``box_scores`` one
        float or ``None`` per box (default: all ``None``). No detection runs; the numbers equal
        those ``estimate_array`` gives when YOLOX finds the same boxes.
        """
        _check_rgb_array(image, "estimate_boxes")
        box_array = np.array(boxes, dtype=np.float64)
        if box_array.size == 0:
            box_array = box_array.reshape(0, 4)
        if box_array.ndim != 2 or box_array.shape[1] != 4:
            raise ValueError(
                f"boxes must be (N, 4) x1, y1, x2, y2 in image pixels, got shape {box_array.shape}"
            )
        if not np.isfinite(box_array).all():
            raise ValueError("boxes must be finite numbers; drop the boxes holding NaN or infinity")
        if box_scores is None:
            scores: tuple[float | None, ...] = (None,) * len(box_array)
        else:
            scores = tuple(None if score is None else float(score) for score in box_scores)
            if len(scores) != len(box_array):
                raise ValueError(f"got {len(scores)} box_scores for {len(box_array)} boxes; give one per box")
        return self._pose_images([image], [box_array], [scores])[0]

    def estimate_array(self, image: np.ndarray, min_box_size: float | None = None) -> Poses:
        """All persons of an RGB uint8 HWC image, in that image's pixels.

        ``min_box_size`` (in this image's pixels) defaults to the detector's own option.
        """
        _check_rgb_array(image, "estimate_array")
        return self.estimate_arrays([image], None if min_box_size is None else [min_box_size])[0]

    def estimate_arrays(
        self, images: Sequence[np.ndarray], min_box_sizes: Sequence[float | None] | None = None
    ) -> list[Poses]:
        """``estimate_array`` of each RGB uint8 HWC image, batched: one YOLOX run for all images and
        one pose-model run for all their persons when the models' batch is dynamic (else one run
        per image / per person). The numbers equal those of one ``estimate_array`` call per image.

        ``min_box_sizes``: one value per image in its pixels (``None`` entries, or ``None`` for
        the list, mean the detector's own option).
        """
        images = list(images)
        for image in images:
            _check_rgb_array(image, "estimate_arrays")
        if min_box_sizes is None:
            min_box_sizes = [None] * len(images)
        elif len(min_box_sizes) != len(images):
            raise ValueError(
                f"got {len(min_box_sizes)} min_box_sizes for {len(images)} images; give one per image"
            )
        if not images:
            return []
        boxes, box_scores = [], []
        for image, detections, min_box_size in zip(
            images, self._detect_images(images), min_box_sizes, strict=True
        ):
            if min_box_size is None:
                min_box_size = self.min_box_size
            detections = filter_persons(detections, self.max_persons, min_box_size)
            if len(detections) == 0 and self.mode == "reference":
                height, width = image.shape[:2]
                boxes.append(np.array([[0, 0, width, height]], dtype=np.float64))
                box_scores.append((None,))
            else:
                boxes.append(detections.boxes)
                box_scores.append(tuple(float(score) for score in detections.scores))
        return self._pose_images(images, boxes, box_scores)

    def _estimate_resized(
        self, images: list[np.ndarray], detect_resolution: int | None
    ) -> list[tuple[np.ndarray, Poses]]:
        """Resize each image by the SPEC 1 rule (or not, for ``None``) and estimate on the results,
        batched across the images."""
        det_images = [
            image if detect_resolution is None else resize_to_resolution(image, detect_resolution)
            for image in images
        ]
        min_box_sizes = None
        if self.min_box_size is not None:
            min_box_sizes = [
                self.min_box_size * min(det.shape[0] / image.shape[0], det.shape[1] / image.shape[1])
                for image, det in zip(images, det_images, strict=True)
            ]
        return list(zip(det_images, self.estimate_arrays(det_images, min_box_sizes), strict=True))

    def estimate(self, image, detect_resolution: int | None = None) -> list[Person] | list[list[Person]]:
        """Persons in an image (or a list of them per image of a batch), in INPUT-image pixels.

        ``detect_resolution=None`` (the default) estimates on the image at its own size; an
        integer first resizes it by the SPEC 1 rule, as ``__call__`` does, and scales the results
        back by the ratio of the sizes.
        """
        images, batched = to_rgb_list(image)
        if detect_resolution is not None:
            for rgb in images:
                resolution_size(rgb.shape[0], rgb.shape[1], detect_resolution)
        results = []
        for rgb, (det_image, poses) in zip(
            images, self._estimate_resized(images, detect_resolution), strict=True
        ):
            scale_x = rgb.shape[1] / det_image.shape[1]
            scale_y = rgb.shape[0] / det_image.shape[0]
            results.append(poses.to_persons(scale_x, scale_y))
        return results if batched else results[0]

    def to_openpose(self, persons: list[Person], width: int, height: int) -> OpenPoseFrame:
        """The OpenPose layout of ``estimate()`` results on a ``width`` x ``height`` image, with this
        detector's ``keypoint_threshold``; draw it with ``draw_openpose`` or write it with
        ``frame_to_json``."""
        return persons_to_openpose(persons, width, height, self.keypoint_threshold)

    def __call__(
        self,
        image,
        detect_resolution: int | None = 512,
        image_resolution: int | None = 512,
        include_body: bool = True,
        include_hand: bool = True,
        include_face: bool = True,
        include_foot: bool = False,
        output_type: str = "pil",
        *,
        hand_and_face: bool | None = None,
        stick_scaling: bool = False,
        overlay: bool = False,
        style: str = "annotator",
        draw_at_output_resolution: bool = False,
    ):
        """The OpenPose-style control map of an image (or a list of maps for a batch).

        The image is resized so its short side is about ``detect_resolution`` (SPEC 1; ``None``:
        its own size), keypoints are drawn on a black canvas of that size (or on the image itself
        with ``overlay=True``), and the map is resized with linear interpolation to the size the
        same rule gives for ``image_resolution`` (``None``: the input size). ``output_type``:
        ``"pil"`` or ``"np"`` (RGB uint8 HWC). ``hand_and_face`` is controlnet_aux's shorthand:
        when given, it sets both ``include_hand`` and ``include_face``. ``style`` and
        ``draw_at_output_resolution``: see :class:`~dwpose_ctrl.render.RenderOptions`.
        """
        if hand_and_face is not None:
            include_hand = include_face = check_flag("hand_and_face", hand_and_face)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        overlay = check_flag("overlay", overlay)
        options = RenderOptions(
            include_body=check_flag("include_body", include_body),
            include_hand=check_flag("include_hand", include_hand),
            include_face=check_flag("include_face", include_face),
            include_foot=check_flag("include_foot", include_foot),
            stick_scaling=check_flag("stick_scaling", stick_scaling),
            style=style,
            draw_at_output_resolution=check_flag("draw_at_output_resolution", draw_at_output_resolution),
        )
        images, batched = to_rgb_list(image)
        output_sizes = []
        for rgb in images:
            height, width = rgb.shape[:2]
            if detect_resolution is not None:
                resolution_size(height, width, detect_resolution)
            output_sizes.append(
                (height, width)
                if image_resolution is None
                else resolution_size(height, width, image_resolution)
            )
        maps = []
        estimated = self._estimate_resized(images, detect_resolution)
        for (det_image, poses), (out_height, out_width) in zip(estimated, output_sizes, strict=True):
            det_height, det_width = det_image.shape[:2]
            frame = to_openpose(poses.keypoints, poses.scores, det_width, det_height, self.keypoint_threshold)
            control = render_map(frame, (out_height, out_width), options, det_image if overlay else None)
            maps.append(Image.fromarray(control) if output_type == "pil" else control)
        return maps if batched else maps[0]

    def __repr__(self) -> str:
        choice = self.runtime_choice
        runs_on = f"{choice.backend} on {choice.device}, {choice.dtype}"
        if choice.providers:
            runs_on += f", providers {list(choice.providers)}"
        return (
            f"DWposeDetector(det_model={str(self.det_model_path)!r}, "
            f"pose_model={str(self.pose_model_path)!r}, "
            f"device={self.device!r}, backend={self.backend_name!r}, dtype={self.dtype!r}, "
            f"mode={self.mode!r}) [runs: {runs_on}]"
        )
