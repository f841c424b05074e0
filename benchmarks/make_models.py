"""Random-weight ONNX exports of the official architectures, made with the project's own export.

Speed does not depend on weight values, and the official ``yolox_l.onnx`` and
``dw-ll_ucoco_384.onnx`` cannot be downloaded here, so the benchmark times the same
architectures with random weights (fixed seed): YOLOX-L at 640x640, DWPose-l (RTMPose-l) at
384x288 and the smaller DWPose students m/s/t at 256x192, all through
:func:`dwpose_ctrl.models.export.export_onnx` (BatchNorm folded; dynamic batch for the pose
models, batch 1 for the detector as in the official file). Files are
cached in ``benchmarks/.cache/models`` (outside git) and rebuilt only when missing.

Run ``python -m benchmarks.make_models`` to make them ahead of a benchmark run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "models"
SEED = 0


@dataclass(frozen=True)
class RandomModel:
    """One random-weight export: family, size and input (height, width)."""

    family: str  # "yolox" or "rtmpose"
    size: str
    input_size: tuple[int, int]

    @property
    def filename(self) -> str:
        height, width = self.input_size
        return f"{self.family}_{self.size}_{height}x{width}_random_seed{SEED}.onnx"


YOLOX_L_640 = RandomModel("yolox", "l", (640, 640))
RTMPOSE_L_384 = RandomModel("rtmpose", "l", (384, 288))
RTMPOSE_M_256 = RandomModel("rtmpose", "m", (256, 192))
RTMPOSE_S_256 = RandomModel("rtmpose", "s", (256, 192))
RTMPOSE_T_256 = RandomModel("rtmpose", "t", (256, 192))
ALL_MODELS = (YOLOX_L_640, RTMPOSE_L_384, RTMPOSE_M_256, RTMPOSE_S_256, RTMPOSE_T_256)


def build_random(model: RandomModel):
    """The torch network with seeded random weights, in eval mode."""
    import torch

    from dwpose_ctrl.models.rtmpose import build_rtmpose
    from dwpose_ctrl.models.yolox import build_yolox

    torch.manual_seed(SEED)
    network = (
        build_yolox(model.size) if model.family == "yolox" else build_rtmpose(model.size, model.input_size)
    )
    return network.eval()


def ensure_model(model: RandomModel, cache: Path = CACHE, log=print) -> Path:
    """Path of the export, making it first when it is not cached."""
    path = cache / model.filename
    if path.exists():
        return path
    from dwpose_ctrl.models.export import export_onnx

    log(f"exporting {model.filename} (random weights, seed {SEED})")
    # The detector keeps a fixed batch of 1 like the official yolox_l.onnx (its dynamic-batch export
    # also loses the static anchor and class dimensions of the output, which the pipeline checks).
    # export_onnx writes under a name unique to this process, so two benchmarks may fill one cache.
    dynamic_batch = model.family == "rtmpose"
    return export_onnx(build_random(model), path, input_size=model.input_size, dynamic_batch=dynamic_batch)


def ensure_models(models=ALL_MODELS, cache: Path = CACHE, log=print) -> dict[RandomModel, Path]:
    return {model: ensure_model(model, cache, log) for model in models}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for model, path in ensure_models(cache=args.cache).items():
        print(f"{model.family}-{model.size} {model.input_size}: {path}")


if __name__ == "__main__":
    main()
