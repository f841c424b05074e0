"""Int8 models: a faster CPU mode with a measured accuracy cost (onnxruntime's quantisation tools).

Static quantisation (QDQ format, int8 weights per output channel, uint8 activations with ranges
calibrated on real inputs) ran DWPose-l and YOLOX-L about 2.5-3x faster than float32 on the
project's AVX-512 VNNI test machine (``benchmarks/RESULTS.md``); dynamic quantisation needs no
calibration but turns convolutions into ``ConvInteger`` and was *slower* than float32 there
(DWPose-l: 418 vs 243 ms per person), so it is offered only for completeness. The quantised
file is an ordinary ONNX model with the same inputs and outputs, so it plugs into
:class:`~dwpose_ctrl.detector.DWposeDetector` unchanged::

    from dwpose_ctrl.quantize import quantize_for_pipeline
    pose_int8 = quantize_for_pipeline("dw-ll_ucoco_384.onnx", "dw-ll_ucoco_384_int8.onnx",
                                      images=["photos/a.jpg", "photos/b.jpg"], detector="yolox_l.onnx")
    detector = DWposeDetector(det_model="yolox_l.onnx", pose_model=pose_int8)

or from a shell: ``python -m dwpose_ctrl.quantize dw-ll_ucoco_384.onnx pose_int8.onnx --images photos/``.
Outputs change: ``benchmarks/RESULTS.md`` lists the measured cost (detector recall, keypoint
deviation from float32 on the same crops). Calibrate on photos like the ones you will process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from dwpose_ctrl.engines.storage import walk_folders
from dwpose_ctrl.extras import MissingExtraError, require
from dwpose_ctrl.files import atomic_path, check_regular_file
from dwpose_ctrl.inputs import to_rgb
from dwpose_ctrl.person_detection import detect_persons, letterbox
from dwpose_ctrl.resize import resize_to_resolution
from dwpose_ctrl.runtime import OnnxBackend
from dwpose_ctrl.topdown import build_crops
from dwpose_ctrl.weights import load_onnx_file

Role = Literal["detector", "pose"]
Method = Literal["static", "dynamic"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def model_role(path: str | os.PathLike) -> Role:
    """``"pose"`` for a model with two outputs (SimCC x and y), ``"detector"`` for one (YOLOX)."""
    import onnx

    outputs = onnx.load(str(path), load_external_data=False).graph.output
    if len(outputs) == 2:
        return "pose"
    if len(outputs) == 1:
        return "detector"
    raise ValueError(
        f"{path}: {len(outputs)} outputs; expected a YOLOX (1 output) or RTMPose (2 outputs) model"
    )


def quantize_model(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    calibration: Iterable[np.ndarray] | None = None,
    method: Method = "static",
    per_channel: bool = True,
) -> Path:
    """Write an int8 copy of an ONNX model.

    ``method="static"`` needs ``calibration``: float32 NCHW input batches exactly as the model
    receives them (see :func:`calibration_batches`). ``method="dynamic"`` ignores it.
    """
    require("onnxruntime.quantization", "cpu", "int8 quantisation (onnxruntime's tools)")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in ("static", "dynamic"):
        raise ValueError(f"method must be 'static' or 'dynamic', got {method!r}")
    source, destination = Path(source), Path(destination)
    check_regular_file(source, "ONNX model")
    if source.resolve() == destination.resolve():
        raise ValueError("destination must differ from source (the float32 model is read while writing)")
    load_onnx_file(source, "ONNX model file")  # a clear error for empty, unreadable or corrupt files
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(
            str(_at_least_opset_13(source, Path(scratch))), str(prepared), skip_symbolic_shape=True
        )
        partial = Path(scratch) / "quantized.onnx"
        if method == "dynamic":
            quantize_dynamic(
                str(prepared), str(partial), per_channel=per_channel, weight_type=QuantType.QInt8
            )
        else:
            batches = [np.ascontiguousarray(batch, dtype=np.float32) for batch in (calibration or ())]
            if not batches:
                raise ValueError("static quantisation needs calibration batches (see calibration_batches)")
            input_name = OnnxBackend(source).input_name

            class Batches(CalibrationDataReader):
                def __init__(self) -> None:
                    self._items = iter([{input_name: batch} for batch in batches])

                def get_next(self):
                    return next(self._items, None)

            quantize_static(
                str(prepared),
                str(partial),
                Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        with atomic_path(destination) as temporary:  # the scratch folder may be on another disk
            shutil.copyfile(partial, temporary)
    return destination


def _at_least_opset_13(source: Path, scratch: Path) -> Path:
    """Per-channel quantisation needs ``DequantizeLinear(axis=...)``, i.e. opset 13 or newer
    (the official YOLOX exports are opset 11): convert older models first."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        return source
    converted = scratch / "opset13.onnx"
    onnx.save(version_converter.convert_version(model, 13), str(converted))
    return converted


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named directly or found (sorted, recursively) in the named folders.

    Only regular files are taken from folders (a FIFO named ``p.jpg`` would block the read), and
    folders of any depth are walked without recursion.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += sorted(
                Path(folder, name)
                for folder, _, names in walk_folders(str(item))
                for name in names
                if Path(name).suffix.lower() in IMAGE_SUFFIXES and os.path.isfile(os.path.join(folder, name))
            )
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"no image or folder at {item}")
    if not found:
        raise ValueError(f"no images found in {[str(p) for p in paths]}")
    return found


def calibration_batches(
    model: str | os.PathLike,
    images: Sequence,
    detector: str | os.PathLike | None = None,
    detect_resolution: int = 512,
    bgr_detector_input: bool = True,
) -> list[np.ndarray]:
    """The inputs ``model`` sees in the pipeline for ``images`` (paths, arrays or PIL images).

    Detector: each image resized by the SPEC 1 rule and letterboxed (BGR, as the default mode
    feeds YOLOX, unless ``bgr_detector_input=False``). Pose model: one batch of person crops per
    image, from the boxes ``detector`` finds (the whole image when no detector is given or it
    finds nobody).
    """
    role = model_role(model)
    backend = OnnxBackend(model)
    finder = OnnxBackend(detector) if detector is not None and role == "pose" else None
    batches = []
    for item in images:
        rgb = resize_to_resolution(to_rgb(item), detect_resolution)
        det_view = np.ascontiguousarray(rgb[:, :, ::-1]) if bgr_detector_input else rgb
        if role == "detector":
            batches.append(letterbox(det_view, backend.input_size)[0])
            continue
        boxes = np.array([[0, 0, rgb.shape[1], rgb.shape[0]]], dtype=np.float64)
        if finder is not None:
            found = detect_persons(finder, det_view)
            if len(found):
                boxes = found.boxes
        batches.append(build_crops(rgb, boxes, backend.input_size).inputs)
    return batches


def quantize_for_pipeline(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    images: Sequence,
    detector: str | os.PathLike | None = None,
    method: Method = "static",
) -> Path:
    """Quantise a detector or pose model, calibrated on the pipeline's own inputs for ``images``."""
    calibration = calibration_batches(source, images, detector) if method == "static" else None
    return quantize_model(source, destination, calibration, method=method)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dwpose_ctrl.quantize",
        description="Write an int8 copy of a YOLOX or DWPose ONNX model (faster on CPU; outputs change).",
        epilog="Example: python -m dwpose_ctrl.quantize dw-ll_ucoco_384.onnx pose_int8.onnx "
        "--images photos/ --detector yolox_l.onnx",
    )
    parser.add_argument("source", type=Path, help="float32 ONNX model (YOLOX detector or DWPose pose model)")
    parser.add_argument("destination", type=Path, help="where to write the int8 model")
    parser.add_argument(
        "--images", nargs="+", default=[], help="calibration images or folders (static method)"
    )
    parser.add_argument(
        "--detector", type=Path, help="YOLOX model to find persons for pose-model calibration"
    )
    parser.add_argument("--method", choices=("static", "dynamic"), default="static")
    args = parser.parse_args(argv)
    if args.method == "static" and not args.images:
        parser.error("--images is required for static quantisation")
    try:
        images = image_files(args.images) if args.images else []
        path = quantize_for_pipeline(args.source, args.destination, images, args.detector, args.method)
    except (ValueError, OSError, MissingExtraError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
