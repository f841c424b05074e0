"""Turn an mmpose / DWPose / YOLOX checkpoint into safetensors + ONNX.

    python -m dwpose_ctrl.convert CHECKPOINT --out DIR [--name NAME] [--size S] [--input-size H W]

The architecture (RTMPose t/s/m/l/x and its input size, or the YOLOX variant) is read from the
tensor shapes; ``--size`` and ``--input-size`` are checks for RTMPose, and for YOLOX
``--input-size`` sets the ONNX resolution. :func:`export_model` is the Python entry point (the
trainer's ``export`` uses it).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dwpose_ctrl.extras import MissingExtraError, require

if TYPE_CHECKING:  # torch is the '[torch]' extra: imported when a conversion runs
    from torch import nn

    from dwpose_ctrl.models.rtmpose import RTMPose
    from dwpose_ctrl.models.yolox import YOLOX

PURPOSE = "the converter (python -m dwpose_ctrl.convert)"


@dataclass(frozen=True)
class ExportResult:
    """Files written by :func:`export_model` and the onnxruntime-vs-PyTorch check."""

    safetensors_path: Path
    onnx_path: Path | None
    max_abs_diff: float | None


def verify_onnx(model: nn.Module, onnx_path: str | os.PathLike, input_size: tuple[int, int]) -> float:
    """Largest absolute difference between onnxruntime and PyTorch (float32, CPU) on a random batch of 2."""
    ort = require("onnxruntime", "cpu", "checking the exported ONNX file")
    torch = require("torch", "torch", PURPOSE)
    from dwpose_ctrl.models.export import io_names
    from dwpose_ctrl.models.yolox import YOLOX

    height, width = input_size
    batch = np.random.default_rng(0).uniform(-2.0, 2.0, (2, 3, height, width)).astype(np.float32)
    if isinstance(model, YOLOX):
        batch = (batch + 2.0) * 63.75
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name, _ = io_names(model)
    onnx_outputs = session.run(None, {input_name: batch})
    reference = model.float().cpu().eval()
    with torch.inference_mode():
        torch_outputs = reference(torch.from_numpy(batch))
    if isinstance(torch_outputs, torch.Tensor):
        torch_outputs = (torch_outputs,)
    return max(
        float(np.abs(ours.numpy() - theirs).max())
        for ours, theirs in zip(torch_outputs, onnx_outputs, strict=True)
    )


def export_model(
    model: RTMPose | YOLOX,
    out_dir: str | os.PathLike,
    name: str,
    onnx: bool = True,
    input_size: tuple[int, int] | None = None,
    opset: int = 17,
    verify: bool = True,
) -> ExportResult:
    """Write ``out_dir/name.safetensors`` and (unless ``onnx=False``) ``out_dir/name.onnx``.

    With ``verify`` the ONNX file is run with onnxruntime and compared to PyTorch; the largest
    absolute difference is returned in the result.
    """
    require("torch", "torch", PURPOSE)
    from dwpose_ctrl.models.export import default_input_size, export_onnx, export_safetensors
    from dwpose_ctrl.models.rtmpose import RTMPose
    from dwpose_ctrl.models.yolox import YOLOX

    if not isinstance(model, (RTMPose, YOLOX)):
        raise TypeError(f"export_model expects an RTMPose or YOLOX model, got {type(model).__name__}")
    if not name or Path(name).name != name:
        raise ValueError(f"name must be a plain file stem such as 'dw-ll_ucoco_384', got {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safetensors_path = export_safetensors(model, out / f"{name}.safetensors")
    if not onnx:
        return ExportResult(safetensors_path, None, None)
    size = tuple(input_size) if input_size is not None else default_input_size(model)
    onnx_path = export_onnx(model, out / f"{name}.onnx", input_size=size, opset=opset)
    max_abs_diff = verify_onnx(model, onnx_path, size) if verify else None
    return ExportResult(safetensors_path, onnx_path, max_abs_diff)


def parse_opset(text: str) -> int:
    """argparse type of ``--opset``: a whole number the exporter supports (see ``check_opset``)."""
    from dwpose_ctrl.models.export import DEFAULT_OPSET, check_opset

    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"the opset is a whole number such as {DEFAULT_OPSET}, got {text!r}")
    try:
        return check_opset(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("'", "")) from error


def check_out_dir(out: Path) -> None:
    """Refuse an ``--out`` that names an existing file (the outputs go into a folder)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created when missing)")


def _parser() -> argparse.ArgumentParser:
    from dwpose_ctrl.models.export import DEFAULT_OPSET, MIN_OPSET, max_opset  # needs torch

    parser = argparse.ArgumentParser(
        prog="python -m dwpose_ctrl.convert",
        description="Convert an mmpose/DWPose RTMPose or a YOLOX checkpoint to safetensors and ONNX.",
    )
    parser.add_argument(
        "checkpoint", type=Path, help=".pth/.pt/.safetensors checkpoint (or .onnx to re-export)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--name", help="output file stem (default: the checkpoint's stem)")
    parser.add_argument("--size", help="expected RTMPose size (t/s/m/l/x) or YOLOX variant; checked")
    parser.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), help="RTMPose: checked; YOLOX: ONNX input size"
    )
    parser.add_argument(
        "--part",
        choices=("auto", "student", "teacher", "stage2"),
        default="auto",
        help="distiller checkpoints: which network (stage2 = teacher backbone + student head)",
    )
    parser.add_argument(
        "--opset",
        type=parse_opset,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} to {max_opset()} (default: %(default)s)",
    )
    parser.add_argument("--no-onnx", action="store_true", help="write safetensors only")
    parser.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        help="load pickles that need arbitrary code (only for files you trust)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        require("torch", "torch", PURPOSE)
    except MissingExtraError as error:
        print(f"python -m dwpose_ctrl.convert: error: {error}", file=sys.stderr)
        return 2
    from dwpose_ctrl.models.checkpoints import UnsafeCheckpointError, load_model
    from dwpose_ctrl.models.rtmpose import RTMPose

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        check_out_dir(args.out)
        model = load_model(args.checkpoint, part=args.part, allow_unsafe_pickle=args.allow_unsafe_pickle)
    except (UnsafeCheckpointError, ValueError, OSError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.size is not None and args.size != model.size:
        print(
            f"{parser.prog}: error: the checkpoint is size {model.size!r}, not {args.size!r}", file=sys.stderr
        )
        return 2
    input_size = tuple(args.input_size) if args.input_size else None
    if isinstance(model, RTMPose) and input_size is not None and input_size != model.input_size:
        print(
            f"{parser.prog}: error: the checkpoint's head is for input "
            f"{model.input_size[0]}x{model.input_size[1]}, not {input_size[0]}x{input_size[1]}",
            file=sys.stderr,
        )
        return 2
    try:
        result = export_model(
            model,
            args.out,
            args.name or args.checkpoint.stem,
            onnx=not args.no_onnx,
            input_size=input_size,
            opset=args.opset,
        )
    except (ValueError, OSError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result.safetensors_path}")
    if result.onnx_path is not None:
        print(f"wrote {result.onnx_path} (onnxruntime vs PyTorch max abs diff {result.max_abs_diff:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
