"""Export a trained model (ours or an official checkpoint) to safetensors + ONNX.

Goes through ``dwpose_ctrl.convert.export_model``, the model zoo's one export path, so the ONNX
file is what ``DWposeDetector(pose_model=...)`` loads: input ``N x 3 x h x w`` (dynamic N),
outputs ``simcc_x`` and ``simcc_y``. Examples:
  python -m training export --checkpoint work_dirs/self-distill-t/best.pth --out exported/
  python -m training export --checkpoint dw-ll_ucoco.pth --part stage2 --out exported/ --allow-unsafe-pickle

Training checkpoints (``best.pth``, ``last.pth``) hold the shipping model under ``state_dict``:
the student after ``distill``, teacher backbone + student head after ``self-distill``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to safetensors + ONNX (for DWposeDetector)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .pth/.safetensors checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--name", help="output file stem (default: the checkpoint's stem)")
    parser.add_argument(
        "--part",
        choices=("auto", "student", "teacher", "stage2"),
        default="auto",
        help="distiller checkpoints: which network (stage2 = teacher backbone + student head)",
    )
    parser.add_argument("--opset", type=_opset, default=17, help="ONNX opset (11 to the newest torch writes)")
    parser.add_argument("--no-onnx", action="store_true", help="write safetensors only")
    parser.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        help="load pickles that need arbitrary code (only for files you trust)",
    )


def _opset(text: str) -> int:
    from dwpose_ctrl.convert import parse_opset

    return parse_opset(text)


def run(args: argparse.Namespace) -> int:
    """Bad input raises ``ValueError``/``OSError``: ``python -m training`` prints it as one error line."""
    from dwpose_ctrl.convert import check_out_dir, export_model
    from dwpose_ctrl.models import RTMPose, load_model

    check_out_dir(args.out)
    model = load_model(args.checkpoint, part=args.part, allow_unsafe_pickle=args.allow_unsafe_pickle)
    if not isinstance(model, RTMPose):
        raise ValueError(f"{args.checkpoint} holds a {type(model).__name__}, not an RTMPose model")
    result = export_model(
        model, args.out, args.name or args.checkpoint.stem, onnx=not args.no_onnx, opset=args.opset
    )
    print(f"safetensors: {result.safetensors_path}")
    if result.onnx_path is not None:
        print(f"onnx: {result.onnx_path} (max |onnxruntime - torch| = {result.max_abs_diff:.2e})")
    return 0
