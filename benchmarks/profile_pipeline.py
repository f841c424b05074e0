"""Where dwpose-ctrl spends its time around the networks (cProfile over the benchmark images).

    python -m benchmarks.profile_pipeline                      # Nano + DWPose-l, default mode
    python -m benchmarks.profile_pipeline --pose t --mode reference --top 30

Prints the share of the wall time spent inside onnxruntime and the functions that take the most
time outside it, which is what the "nothing wasted around the networks" work looks at.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from benchmarks import make_models, suite

POSE_MODELS = {
    "l": make_models.RTMPOSE_L_384,
    "m": make_models.RTMPOSE_M_256,
    "s": make_models.RTMPOSE_S_256,
    "t": make_models.RTMPOSE_T_256,
}


def main(argv: list[str] | None = None) -> None:
    from dwpose_ctrl.detector import DWposeDetector
    from dwpose_ctrl.inputs import to_rgb

    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_pipeline", description=__doc__)
    parser.add_argument(
        "--pose", choices=sorted(POSE_MODELS), default="l", help="DWPose size (random weights)"
    )
    parser.add_argument("--mode", choices=("default", "reference"), default="default")
    parser.add_argument("--passes", type=int, default=2, help="profiled passes over the images")
    parser.add_argument("--top", type=int, default=20, help="functions to list")
    args = parser.parse_args(argv)

    pose = make_models.ensure_model(POSE_MODELS[args.pose])
    detector = DWposeDetector(det_model=suite.NANO, pose_model=pose, mode=args.mode)
    images = [to_rgb(path) for path in suite.benchmark_images()]
    for image in images:
        detector(image, output_type="np")
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    for _ in range(args.passes):
        for image in images:
            detector(image, output_type="np")
    profile.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profile)
    network = sum(
        timing[2] for (_, _, name), timing in stats.stats.items() if "onnxruntime_pybind11_state.run" in name
    )
    count = args.passes * len(images)
    print(
        f"{count} images, {wall / count * 1000:.1f} ms per image, of which onnxruntime "
        f"{network / count * 1000:.1f} ms ({100 * network / wall:.1f}%); outside it "
        f"{(wall - network) / count * 1000:.1f} ms per image"
    )
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
