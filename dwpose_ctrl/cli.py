"""``dwpose-render``: control maps for files, folders, globs and videos, locally or on Ray."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings

from PIL import Image

from dwpose_ctrl.engines.item import JobSettings, SequenceSettings, Smoothing
from dwpose_ctrl.engines.plan import VIDEO_CODECS, OutputOptions
from dwpose_ctrl.engines.pose import RenderSettings
from dwpose_ctrl.engines.report import DONE, FAILED, EngineError, ItemResult, RunReport
from dwpose_ctrl.engines.storage import Storage
from dwpose_ctrl.extras import MissingExtraError
from dwpose_ctrl.inputs import MAX_PIXELS
from dwpose_ctrl.placement import BACKENDS, DTYPES, RuntimeUnavailableError
from dwpose_ctrl.retarget import METHODS as ALIGN_METHODS
from dwpose_ctrl.styles import STYLE_NAMES

EXAMPLES = """\
examples:
  # a folder of photos (searched recursively) -> PNG maps mirroring its tree
  dwpose-render photos/ -o maps/

  # local model files (offline), OpenPose JSON and an overlay beside each map
  dwpose-render photos/ -o maps/ --det-model yolox_l.onnx --pose-model dw-ll_ucoco_384.onnx --json --overlay

  # a ControlNet training set for diffusers' train_controlnet.py (captions from a.txt beside a.jpg)
  dwpose-render photos/ -o dataset/ --metadata

  # globs and single files; quote globs so the shell leaves them to dwpose-render
  dwpose-render "shoot/**/*.jpg" portrait.png -o maps/

  # a video: lossless map video, per-frame JSON with person IDs and per-frame PNGs,
  # person detection every 5th frame (boxes tracked in between), smoothed keypoints
  dwpose-render dance.mp4 -o maps/ --video-codec ffv1 --json --frames --detect-every 5 --smooth

  # animation: the driving video's poses with the proportions of the character in ref.png,
  # placed on it, smoothed offline, short dropouts filled; map video + one sequence JSON
  dwpose-render driving.mp4 -o out/ --align-to ref.png --smooth --fill-gaps 4 --json

  # on a Ray cluster, reading and writing S3
  dwpose-render s3://bucket/photos -o s3://bucket/maps --engine ray --ray-address auto --ray-workers 8

Existing outputs are skipped (--overwrite redoes them), so an interrupted run is resumed by running
the same command again. Ctrl-C stops after the current item (press twice to abort at once).
Exit status: 0 all done or skipped, 1 some input failed, 2 bad arguments, 130 interrupted.
"""


def _resolution(text: str) -> int | None:
    if text.lower() in ("none", "native", "0"):
        return None
    value = int(text)
    if value < 64:
        raise argparse.ArgumentTypeError(f"a resolution must be >= 64 (or 'native'), got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE``; VALUE is read as JSON when it is JSON (``true``, ``3``), else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except (ValueError, RecursionError):  # not JSON (or nested too deeply to be): the text itself
        return key, value


class _EnvAction(argparse.Action):
    """``--env``: print the environment report and exit, like ``--version`` (no INPUT needed)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from dwpose_ctrl.env import environment_report

        print(environment_report())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwpose-render",
        description=(
            "Render DWPose OpenPose-style ControlNet maps for images and videos.\n\n"
            "Inputs are files, folders (searched recursively for images and videos), glob patterns and\n"
            "s3:// (or other fsspec) locations. Outputs mirror the input tree below OUTPUT: a.jpg -> a.png;\n"
            "when two inputs would share an output name (a.jpg and a.png in one folder) both keep their\n"
            "full name (a.jpg.png, a.png.png). Videos give a map video with the same frames and timing."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image/video files, folders, globs, s3:// URLs"
    )
    parser.add_argument(
        "-o", "--output", default="dwpose-maps", help="output folder or URL (default: %(default)s)"
    )
    parser.add_argument(
        "--env",
        action=_EnvAction,
        help="print versions, runtimes, what --backend auto picks and the model files, then exit "
        "(paste it into bug reports)",
    )

    outputs = parser.add_argument_group("outputs")
    outputs.add_argument(
        "--json", action="store_true", help="write OpenPose JSON beside each map (videos: per frame)"
    )
    outputs.add_argument(
        "--overlay", action="store_true", help="also write the skeleton drawn over the photo"
    )
    outputs.add_argument(
        "--frames", action="store_true", help="videos: also write every frame's map as a PNG"
    )
    outputs.add_argument(
        "--metadata",
        action="store_true",
        help="write metadata.jsonl (photo copy under images/, map, caption from a sidecar .txt) for the "
        "datasets imagefolder loader and diffusers' train_controlnet.py",
    )
    outputs.add_argument(
        "--video-codec",
        choices=sorted(VIDEO_CODECS),
        default="h264",
        help="map video codec: h264 (.mp4, lossy: colours shift slightly), h264-lossless (.mkv, "
        "libx264rgb qp 0), ffv1 (.mkv, lossless), png (.mov, lossless) (default: %(default)s)",
    )
    outputs.add_argument("--overwrite", action="store_true", help="redo items whose outputs already exist")

    drawing = parser.add_argument_group("map")
    drawing.add_argument(
        "--detect-resolution",
        type=_resolution,
        default=512,
        help="short side the image is resized to for detection and drawing; 'native' keeps its size "
        "(default: 512)",
    )
    drawing.add_argument(
        "--image-resolution",
        type=_resolution,
        default=512,
        help="short side of the written map; 'native' gives the input's size (default: 512)",
    )
    drawing.add_argument("--no-body", action="store_true", help="do not draw bodies")
    drawing.add_argument("--no-hand", action="store_true", help="do not draw hands")
    drawing.add_argument("--no-face", action="store_true", help="do not draw faces")
    drawing.add_argument("--foot", action="store_true", help="draw feet (never drawn by the reference)")
    drawing.add_argument(
        "--stick-scaling", action="store_true", help="thicker limbs on large maps (SDXL ControlNets)"
    )
    drawing.add_argument(
        "--style",
        choices=STYLE_NAMES,
        default="annotator",
        help="drawing convention: annotator (ControlNet's), musepose (limb width from length), "
        "mimicmotion (confidence-scaled colours, drawn at 2160 px) (default: %(default)s)",
    )
    drawing.add_argument(
        "--draw-at-output-resolution",
        action="store_true",
        help="draw on a canvas of the map's output size (sharp large maps) instead of resizing",
    )

    model = parser.add_argument_group("detector")
    model.add_argument(
        "--det-model", metavar="PATH_OR_NAME", help="person detector ONNX file or registered name"
    )
    model.add_argument("--pose-model", metavar="PATH_OR_NAME", help="pose model ONNX file or registered name")
    model.add_argument(
        "--models-dir", metavar="DIR", help="folder holding model files (also DWPOSE_CTRL_HOME)"
    )
    model.add_argument(
        "--mode", choices=("default", "reference"), default="default", help="see docs (default: default)"
    )
    model.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="runtime; auto: onnxruntime on the CPU, on CUDA onnxruntime's CUDA provider when it works "
        "else torch, torch on mps (default: auto)",
    )
    model.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    model.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="float16/bfloat16: a faster mode for the torch backend on a GPU (default: float32)",
    )
    model.add_argument(
        "--providers",
        type=lambda text: [name for name in text.split(",") if name],
        metavar="NAMES",
        help="onnxruntime execution providers, comma-separated, e.g. coreml, directml, rocm, openvino, "
        "tensorrt or full names such as CoreMLExecutionProvider",
    )
    model.add_argument(
        "--allow-cpu-fallback",
        action="store_true",
        help="when the --device cannot be used, warn and run on the CPU instead of stopping",
    )
    model.add_argument("--score-threshold", type=float, default=0.3, help="person box score threshold (0.3)")
    model.add_argument("--nms-threshold", type=float, default=0.45, help="box NMS IoU threshold (0.45)")
    model.add_argument(
        "--keypoint-threshold", type=float, default=0.3, help="keypoint visibility threshold (0.3)"
    )
    model.add_argument("--max-persons", type=_positive_int, help="keep the N largest persons")
    model.add_argument("--min-box-size", type=float, help="drop persons whose box is smaller (pixels)")

    video = parser.add_argument_group("video")
    video.add_argument(
        "--detect-every",
        type=_positive_int,
        default=1,
        help="detect persons every N frames, track boxes between",
    )
    video.add_argument(
        "--smooth",
        action="store_true",
        help="smooth keypoints over time: offline and zero-lag by default (see --smooth-method) (off)",
    )
    video.add_argument(
        "--smooth-method",
        choices=("offline", "one-euro"),
        help="offline: confidence-weighted local polynomial over the whole clip, no lag; one-euro: the "
        "streaming One-Euro filter (default: offline)",
    )
    video.add_argument(
        "--smooth-radius", type=_positive_int, help="offline window: frames each side (default: 4)"
    )
    video.add_argument("--smooth-min-cutoff", type=float, help="One-Euro min cutoff in Hz (default: 1.0)")
    video.add_argument("--smooth-beta", type=float, help="One-Euro speed coefficient (default: 0.0)")
    video.add_argument(
        "--fill-gaps",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="fill keypoints missing for at most N frames by interpolation, marked in the JSON (0: off)",
    )
    video.add_argument(
        "--align-to",
        metavar="IMAGE_OR_JSON",
        help="retarget every video onto the character of this image or OpenPose JSON: its proportions, "
        "placed on it; maps get its size",
    )
    video.add_argument(
        "--align-method",
        choices=ALIGN_METHODS,
        help="segments: each limb gets the reference's length (MusePose-style); linear: one scale and "
        "offset for the clip (MimicMotion-style); none: the poses as they are (default: segments)",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where to run (default: local)"
    )
    run.add_argument(
        "--prefetch",
        type=_non_negative_int,
        default=4,
        help="images decoded/written ahead, twice as many video frames (0: no overlap) (default: 4)",
    )
    run.add_argument("--loaders", type=_non_negative_int, default=2, help="decoding threads (default: 2)")
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4,
        help="images or video frames per network run of the local engine, when the models' batch is "
        "dynamic; results are identical to 1 (default: 4)",
    )
    run.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=MAX_PIXELS,
        help="refuse images with more pixels (decompression bombs) (default: %(default)s)",
    )
    run.add_argument("--report", metavar="FILE", help="write a JSON report of every item")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar; only failures and warnings")
    run.add_argument(
        "--storage-option",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option for URLs, e.g. endpoint_url=http://127.0.0.1:9000 for an S3-compatible server "
        "or anon=true (values are read as JSON when they are JSON)",
    )

    ray = parser.add_argument_group("ray engine")
    ray.add_argument("--ray-address", help="Ray cluster address: auto, ray://host:10001 (default: local Ray)")
    ray.add_argument(
        "--ray-workers",
        type=_positive_int,
        help="actors, one detector each (default: one per GPU of the cluster with --device cuda, else 1)",
    )
    ray.add_argument(
        "--ray-batch-size",
        type=_positive_int,
        default=4,
        help="items per actor call, run through the networks together (default: 4)",
    )
    ray.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPUs per actor (default: 1)")
    ray.add_argument(
        "--ray-gpus-per-worker", type=float, help="GPUs per actor (default: 1 with --device cuda, else 0)"
    )
    return parser


def job_from_args(args: argparse.Namespace) -> JobSettings:
    render = RenderSettings(
        detect_resolution=args.detect_resolution,
        image_resolution=args.image_resolution,
        include_body=not args.no_body,
        include_hand=not args.no_hand,
        include_face=not args.no_face,
        include_foot=args.foot,
        stick_scaling=args.stick_scaling,
        style=args.style,
        draw_at_output_resolution=args.draw_at_output_resolution,
    )
    outputs = OutputOptions(
        json=args.json,
        overlay=args.overlay,
        frames=args.frames,
        metadata=args.metadata,
        video_codec=args.video_codec,
    )
    smoothing, sequence = _temporal_settings(args)
    return JobSettings(
        render=render,
        outputs=outputs,
        max_pixels=args.max_pixels,
        detect_every=args.detect_every,
        smoothing=smoothing,
        video_prefetch=2 * args.prefetch,
        sequence=sequence,
    )


def _given(args: argparse.Namespace, *names: str) -> list[str]:
    return ["--" + name.replace("_", "-") for name in names if getattr(args, name) is not None]


def _temporal_settings(args: argparse.Namespace) -> tuple[Smoothing | None, SequenceSettings | None]:
    """One-Euro settings and whole-clip settings from the video options; options that would do
    nothing with the others given are refused, naming the fix."""
    method = args.smooth_method or "offline"
    needing = {
        "--smooth": _given(args, "smooth_method", "smooth_radius", "smooth_min_cutoff", "smooth_beta")
        if not args.smooth
        else [],
        "--smooth-method one-euro": _given(args, "smooth_min_cutoff", "smooth_beta")
        if method == "offline"
        else [],
        "--smooth-method offline": _given(args, "smooth_radius") if method == "one-euro" else [],
        "--align-to": _given(args, "align_method") if not args.align_to else [],
    }
    for needed, flags in needing.items():
        if flags:
            dropped = "it" if len(flags) == 1 else "them"
            raise ValueError(
                f"{', '.join(flags)}: only used with {needed}; add {needed} or leave {dropped} out"
            )
    smoothing = None
    if args.smooth and method == "one-euro":
        cutoff = 1.0 if args.smooth_min_cutoff is None else args.smooth_min_cutoff
        smoothing = Smoothing(cutoff, 0.0 if args.smooth_beta is None else args.smooth_beta)
    offline = args.smooth and method == "offline"
    if not (offline or args.fill_gaps or args.align_to):
        return smoothing, None
    return smoothing, SequenceSettings(
        smooth=offline,
        smooth_radius=args.smooth_radius or 4,
        fill_gaps=args.fill_gaps,
        align_to=args.align_to,
        align_method=args.align_method or "segments",
    )


def detector_spec_from_args(args: argparse.Namespace):
    from dwpose_ctrl.engines import DetectorSpec

    options = {
        "score_threshold": args.score_threshold,
        "nms_threshold": args.nms_threshold,
        "keypoint_threshold": args.keypoint_threshold,
        "max_persons": args.max_persons,
        "min_box_size": args.min_box_size,
        "local_dir": args.models_dir,
        "dtype": args.dtype,
        "providers": args.providers,
        "allow_cpu_fallback": args.allow_cpu_fallback,
    }
    return DetectorSpec(
        det_model=args.det_model,
        pose_model=args.pose_model,
        device=args.device,
        backend=args.backend,
        mode=args.mode,
        options=options,
    )


class _StopOnSignal:
    """First SIGINT/SIGTERM: finish the current item, then stop. A second one: abort now."""

    def __init__(self, stop: threading.Event, say):
        self.stop = stop
        self.say = say
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.stop.is_set():  # a second SIGINT or SIGTERM: abort now
            raise KeyboardInterrupt
        self.stop.set()
        self.say(
            f"{signal.Signals(signum).name}: stopping after the current item (Ctrl-C again to abort now)"
        )

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def run(args: argparse.Namespace, estimator_factory=None) -> RunReport:
    """Run the job described by parsed arguments; ``estimator_factory`` replaces the detector (tests)."""
    from tqdm import tqdm

    from dwpose_ctrl.engines import render_files

    job = job_from_args(args)
    factory = estimator_factory or detector_spec_from_args(args)
    storage = Storage(dict(args.storage_option))
    if args.report:
        storage.check_writable(args.report, "report")
    if args.align_to and not storage.exists(args.align_to):
        raise ValueError(f"--align-to {args.align_to}: no such file; give a reference image or OpenPose JSON")
    progress = tqdm(total=0, unit="img", disable=args.quiet, dynamic_ncols=True, file=sys.stderr)

    def say(text: str) -> None:
        tqdm.write(text, file=sys.stderr)

    frames_bar: list = []

    def on_plan(items, problems) -> None:
        progress.reset(total=len(items) + len(problems))

    def on_frame() -> None:
        if not frames_bar:
            frames_bar.append(
                tqdm(unit="frame", position=1, leave=False, disable=args.quiet, file=sys.stderr)
            )
        frames_bar[0].update(1)

    def on_result(result: ItemResult) -> None:
        if result.status == FAILED:
            say(f"FAILED {result.location}: {result.reason}")
        elif result.status == DONE and result.reason:
            say(f"WARNING {result.location}: {result.reason}")
        progress.update(1)

    stop = threading.Event()
    ray_options = {
        "address": args.ray_address,
        "workers": args.ray_workers,
        "batch_size": args.ray_batch_size,
        "cpus_per_worker": args.ray_cpus_per_worker,
        "gpus_per_worker": args.ray_gpus_per_worker,
        "show_progress": not args.quiet,
        "quiet": args.quiet,
    }
    try:
        with _StopOnSignal(stop, say):
            report = render_files(
                args.inputs,
                args.output,
                factory,
                job,
                storage=storage,
                overwrite=args.overwrite,
                engine=args.engine,
                prefetch=args.prefetch,
                loaders=args.loaders,
                batch_size=args.batch_size,
                ray_options=ray_options,
                stop=stop,
                on_result=on_result,
                on_plan=on_plan,
                on_frame=on_frame,
            )
    finally:
        for bar in frames_bar:
            bar.close()
        progress.close()
    if args.report:
        storage.write_bytes(args.report, report.to_json().encode("utf-8"))
    return report


def main(argv: list[str] | None = None, estimator_factory=None) -> int:
    """Entry point of ``dwpose-render``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own --max-pixels check names the limit; PIL's warning below it would only repeat it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        report = run(args, estimator_factory)
    except (TypeError, ValueError, OSError, EngineError, MissingExtraError, RuntimeUnavailableError) as error:
        print(f"dwpose-render: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dwpose-render: aborted; run the same command again to finish", file=sys.stderr)
        return 130
    if not args.quiet or report.failures or report.interrupted or report.warnings:
        print(f"dwpose-render: {report.summary()}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
