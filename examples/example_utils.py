"""Pieces the example scripts share: command-line options, the detector and the diffusers pipeline.

Heavy imports (torch, diffusers) happen inside the functions, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from dwpose_ctrl import DWposeDetector
from dwpose_ctrl.extras import MissingExtraError, require
from dwpose_ctrl.pipelines import from_pretrained_dtype

PIPELINE_PURPOSE = "the diffusers examples"


def run(main: Callable[[], None]) -> None:
    """Run an example's ``main``; a missing optional dependency is one line on stderr, exit status 2."""
    try:
        main()
    except MissingExtraError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


SD15_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_CONTROLNET = "lllyasviel/control_v11p_sd15_openpose"
SDXL_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_CONTROLNET = "xinsir/controlnet-openpose-sdxl-1.0"
SDXL_UNION_CONTROLNET = "brad-twinkl/controlnet-union-sdxl-1.0-promax"
FLUX_MODEL = "black-forest-labs/FLUX.1-dev"
FLUX_UNION_CONTROLNET = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro"
SD3_MODEL = "stabilityai/stable-diffusion-3-medium-diffusers"
SD3_POSE_CONTROLNET = "InstantX/SD3-Controlnet-Pose"
EXAMPLE_IMAGES = Path(__file__).resolve().parent / "images"
EXAMPLE_POSES = Path(__file__).resolve().parent / "poses"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def warn_if_empty(control: Image.Image) -> None:
    """Say so when the detector found nobody: the map is black and will not guide the pipeline."""
    if control.getbbox() is None:
        print("warning: no person was found; the control map is empty")


def example_parser(description: str, default_output_dir: str) -> argparse.ArgumentParser:
    """A parser that prints ``description`` (the script's docstring) as written, with ``--output-dir``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output-dir", default=default_output_dir, help="folder for the outputs (default: %(default)s)"
    )
    return parser


def add_resolution_argument(
    parser: argparse.ArgumentParser, default: int = 512, sizes: str = "the map and the result"
) -> None:
    """``--resolution``: the short side of ``sizes``."""
    parser.add_argument(
        "--resolution",
        type=positive_int,
        default=default,
        help=f"short side of {sizes} (default: %(default)s)",
    )


def add_detector_arguments(
    parser: argparse.ArgumentParser, title: str = "pose detector"
) -> argparse._ArgumentGroup:
    """The DWposeDetector options, in a help group named ``title`` (returned, for more options)."""
    group = parser.add_argument_group(title)
    group.add_argument(
        "--det-model",
        metavar="PATH_OR_NAME",
        help="person detector ONNX file or registered name (default: the official yolox_l.onnx)",
    )
    group.add_argument(
        "--pose-model",
        metavar="PATH_OR_NAME",
        help="pose model ONNX file or registered name (default: the official dw-ll_ucoco_384.onnx)",
    )
    group.add_argument(
        "--detector-device",
        default="cpu",
        help="cpu, cuda, cuda:N or mps; on cuda without onnxruntime-gpu the PyTorch backend runs "
        "(default: cpu)",
    )
    group.add_argument(
        "--detect-resolution",
        type=positive_int,
        default=512,
        help="short side used for detection (default: 512)",
    )
    return group


def build_detector(args: argparse.Namespace, **options) -> DWposeDetector:
    """The detector the options ask for; ``options`` go to the constructor (e.g. max_persons)."""
    return DWposeDetector(
        det_model=args.det_model, pose_model=args.pose_model, device=args.detector_device, **options
    )


def control_map(args: argparse.Namespace, photo: Image.Image, **options) -> Image.Image:
    """The OpenPose map of ``photo``: short side ``--resolution``, detected at ``--detect-resolution``.

    ``options`` go to the detector call (e.g. stick_scaling).
    """
    detector = build_detector(args)
    return detector(
        photo, detect_resolution=args.detect_resolution, image_resolution=args.resolution, **options
    )


# from_pretrained's dtype keyword (dtype= in current diffusers, torch_dtype= before); the examples' name
_dtype_option = from_pretrained_dtype


def add_pipeline_arguments(
    parser: argparse.ArgumentParser,
    model_id: str,
    controlnet_id: str,
    steps: int,
    guidance_scale: float = 7.5,
    conditioning_scale: float = 1.0,
    cuda_dtype: str = "float16",
) -> None:
    """The diffusers pipeline and generation options; the model ids, step count, scales and the
    ``--dtype auto`` choice on CUDA default as given."""
    parser.set_defaults(cuda_dtype=cuda_dtype)
    group = parser.add_argument_group("diffusers pipeline")
    group.add_argument(
        "--model-id", default=model_id, help="base model: Hub id or local folder (default: %(default)s)"
    )
    group.add_argument(
        "--controlnet-id",
        default=controlnet_id,
        help="openpose ControlNet: Hub id or local folder (default: %(default)s)",
    )
    group.add_argument("--prompt", default="a dancer on a stage, best quality, detailed")
    group.add_argument("--negative-prompt", default="lowres, bad anatomy, worst quality, low quality")
    group.add_argument(
        "--steps", type=positive_int, default=steps, help="denoising steps (default: %(default)s)"
    )
    group.add_argument("--guidance-scale", type=float, default=guidance_scale, help="(default: %(default)s)")
    group.add_argument(
        "--conditioning-scale",
        type=float,
        default=conditioning_scale,
        help="ControlNet conditioning scale (default: %(default)s)",
    )
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", help="cuda, mps or cpu (default: cuda when available, else cpu)")
    group.add_argument(
        "--dtype",
        choices=("auto", "float16", "bfloat16", "float32"),
        default="auto",
        help=f"weights dtype (default: {cuda_dtype} on cuda, float32 elsewhere)",
    )


def pipeline_device_and_dtype(args: argparse.Namespace):
    """(device, torch dtype) from the options: cuda and float16 when available, else cpu and float32."""
    torch = require("torch", "diffusers", PIPELINE_PURPOSE)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.dtype == "auto":
        cuda_dtype = getattr(torch, getattr(args, "cuda_dtype", "float16"))
        dtype = cuda_dtype if device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    return device, dtype


def load_pipeline(args: argparse.Namespace, sdxl: bool = False):
    """The SD 1.5 (or SDXL) ControlNet pipeline named by ``--model-id`` / ``--controlnet-id``."""
    require("diffusers", "diffusers", PIPELINE_PURPOSE)
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
        UniPCMultistepScheduler,
    )

    device, dtype = pipeline_device_and_dtype(args)
    dtype_option = _dtype_option(dtype)
    controlnet = ControlNetModel.from_pretrained(args.controlnet_id, **dtype_option)
    pipeline_class = StableDiffusionXLControlNetPipeline if sdxl else StableDiffusionControlNetPipeline
    extra = {}
    if sdxl and getattr(args, "vae_id", None):
        from diffusers import AutoencoderKL

        extra["vae"] = AutoencoderKL.from_pretrained(args.vae_id, **dtype_option)
    pipe = pipeline_class.from_pretrained(args.model_id, controlnet=controlnet, **dtype_option, **extra)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    return pipe.to(device)


def generate(pipe, args: argparse.Namespace, control, width: int, height: int, prompt: str | None = None):
    """Run the pipeline on one control image (or a list) with the seeded options; PIL images out."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    count = len(control) if isinstance(control, list) else 1
    result = pipe(
        [prompt or args.prompt] * count,
        negative_prompt=[args.negative_prompt] * count,
        image=control,
        width=width,
        height=height,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        controlnet_conditioning_scale=args.conditioning_scale,
        generator=generator,
    )
    return result.images


def generate_result(
    args: argparse.Namespace, control: Image.Image, width: int, height: int, out: Path, sdxl: bool = False
) -> Image.Image:
    """Load the pipeline, generate one image from ``control`` and save it as ``out / "result.png"``."""
    pipe = load_pipeline(args, sdxl=sdxl)
    (result,) = generate(pipe, args, control, width, height)
    result.save(out / "result.png")
    return result


def output_dir(path: str | Path) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def side_by_side(images: list[Image.Image], height: int = 512) -> Image.Image:
    """The images scaled to one height and placed left to right (for quick comparison)."""
    scaled = [
        image.convert("RGB").resize((round(image.width * height / image.height), height)) for image in images
    ]
    strip = Image.new("RGB", (sum(image.width for image in scaled), height))
    left = 0
    for image in scaled:
        strip.paste(image, (left, 0))
        left += image.width
    return strip


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    """``--width``/``--height`` (both or neither) and ``--fit``."""
    from dwpose_ctrl.diffusers_utils import FIT_MODES

    parser.add_argument("--width", type=positive_int, help="result width (default: the map's, rounded)")
    parser.add_argument("--height", type=positive_int, help="result height (default: the map's, rounded)")
    parser.add_argument("--fit", choices=FIT_MODES, default="pad", help="how the map meets --width/--height")


def add_photo_to_pose_arguments(parser: argparse.ArgumentParser, default_image: str) -> None:
    """``--image``, ``--resolution`` (default 1024), ``--width``/``--height``/``--fit`` and the
    detector options: the inputs of every photo -> pose map -> pipeline example."""
    parser.add_argument("--image", default=str(EXAMPLE_IMAGES / default_image), help="photo with a person")
    add_resolution_argument(parser, default=1024, sizes="the map")
    add_size_arguments(parser)
    add_detector_arguments(parser)


def parse_sized_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; a usage error unless ``--width`` and ``--height`` come together or not at all."""
    args = parser.parse_args(argv)
    if (args.width is None) != (args.height is None):
        parser.error("give both --width and --height, or neither")
    return args


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cpu-offload``: the models wait on the CPU and go to the GPU one at a time."""
    parser.add_argument(
        "--cpu-offload",
        action="store_true",
        help="keep models on the CPU and move each to the GPU only while it runs "
        "(enable_model_cpu_offload: much less GPU memory, somewhat slower; needs accelerate)",
    )


def load_pose_pipeline(args: argparse.Namespace, pipeline_class: str, controlnet_class: str, **components):
    """``pipeline_class`` from ``--model-id`` with ``controlnet_class`` from ``--controlnet-id``
    (and ``components`` replacing the saved ones), in ``--dtype``, on ``--device`` or
    CPU-offloaded with ``--cpu-offload``."""
    diffusers = require("diffusers", "diffusers", PIPELINE_PURPOSE)

    device, dtype = pipeline_device_and_dtype(args)
    dtype_option = _dtype_option(dtype)
    controlnet = getattr(diffusers, controlnet_class).from_pretrained(args.controlnet_id, **dtype_option)
    pipe = getattr(diffusers, pipeline_class).from_pretrained(
        args.model_id, controlnet=controlnet, **dtype_option, **components
    )
    if getattr(args, "cpu_offload", False) and device != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def generate_with_pose(pipe, args: argparse.Namespace, pose_kwargs: dict, **options) -> Image.Image:
    """One image from the ``pose_inputs`` keyword arguments and the seeded options; the negative
    prompt goes only to pipelines that take one."""
    import inspect

    import torch

    parameters = inspect.signature(pipe.__call__).parameters
    if "negative_prompt" in parameters and args.negative_prompt:
        options["negative_prompt"] = args.negative_prompt
    (result,) = pipe(
        args.prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        controlnet_conditioning_scale=pose_kwargs.pop(
            "controlnet_conditioning_scale", args.conditioning_scale
        ),
        generator=torch.Generator(device="cpu").manual_seed(args.seed),
        **pose_kwargs,
        **options,
    ).images
    return result


def run_pose_example(
    args: argparse.Namespace,
    pipeline_class: str,
    controlnet_class: str,
    components: dict | None = None,
    **generate_options,
) -> None:
    """photo -> map drawn as the ControlNet wants it -> ``pose_inputs`` -> one image.

    ``components`` replace saved pipeline components (e.g. ``text_encoder_3=None``);
    ``generate_options`` go to the pipeline call.

    Writes control.png (the map as the pipeline gets it), result.png and comparison.png.
    """
    from dwpose_ctrl.diffusers_utils import fit_control_image
    from dwpose_ctrl.pipelines import pose_inputs, recommended_detector_options

    out = output_dir(args.output_dir)
    photo = Image.open(args.image).convert("RGB")
    control = control_map(args, photo, **recommended_detector_options(args.controlnet_id))
    warn_if_empty(control)
    pipe = load_pose_pipeline(args, pipeline_class, controlnet_class, **(components or {}))
    size = {"width": args.width, "height": args.height} if args.width else {}
    kwargs = pose_inputs(pipe, control, fit=args.fit, model_id=args.controlnet_id, **size)
    width, height = kwargs["width"], kwargs["height"]
    fitted = fit_control_image(control, width, height, mode=args.fit, multiple_of=1)
    fitted.save(out / "control.png")
    result = generate_with_pose(pipe, args, kwargs, **generate_options)
    result.save(out / "result.png")
    side_by_side([photo, fitted, result]).save(out / "comparison.png")
    mode = kwargs.get("control_mode")
    print(
        f"wrote {out / 'control.png'}, {out / 'result.png'} and {out / 'comparison.png'} "
        f"({width}x{height}, control_mode {mode})"
    )
