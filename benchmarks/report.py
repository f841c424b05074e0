"""``benchmarks/RESULTS.md`` from a :class:`~benchmarks.suite.SuiteResults`.

Sections written by other parts of the project (``results_render.md``, ``results_training.md``,
``distillation/RESULTS_SECTION.md``) are included verbatim when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.suite import SuiteResults

BENCHMARKS = Path(__file__).resolve().parent
INCLUDED_SECTIONS = (
    ("dwpose-render on a folder", BENCHMARKS / "results_render.md"),
    ("Training speed", BENCHMARKS / "results_training.md"),
    ("Distillation", BENCHMARKS / "distillation" / "RESULTS_SECTION.md"),
    ("Offline smoothing vs One-Euro", BENCHMARKS / "results_smoothing.md"),
)
INCLUDED_MARKER = "<!-- included from"
COMMANDS_HEADING = "## Exact commands"
STAGE_NAMES = ("resize", "detect", "crop", "pose", "decode", "render", "other")


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**no**")


def _machine(suite: SuiteResults) -> list[str]:
    m = suite.machine_before
    after = suite.machine_after or m
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    alt = ", ".join(f"{k} {v}" for k, v in suite.alternatives_versions.items()) or "not run"
    load_before = " / ".join(f"{x:.2f}" for x in m["load_average"])
    load_after = " / ".join(f"{x:.2f}" for x in after["load_average"])
    return [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
        f"AVX2 {_yes(m['avx2'])}, AVX-512 {_yes(m['avx512f'])}, AVX-512 VNNI {_yes(m['avx512_vnni'])}; "
        f"memory {_fmt(m['memory_gib'], 1)} GiB",
        f"- Project environment: {versions}",
        f"- Alternatives' environment (`benchmarks/.venv-alt`): {alt}",
        f"- Commit: {m['git_commit']}; run started {suite.started}, took {suite.elapsed_s / 60:.1f} min",
        f"- Load average (1/5/15 min) before: {load_before}; after: {load_after}. A load above "
        f"{m['usable_cpus']} means other processes shared the cores: absolute numbers then drop, "
        "ratios between tools (alternating runs, medians) hold better.",
        "",
    ]


def _rss_range(result: harness.ToolResult) -> str:
    samples = result.peak_rss_samples_mib
    return f"[{min(samples):.0f}-{max(samples):.0f}]" if len(samples) > 1 else ""


def _configuration_table(
    configuration: harness.Configuration, results: dict[str, harness.ToolResult]
) -> list[str]:
    base = results.get("ours")
    base_rate = base.images_per_second if base else float("nan")
    lines = [
        "| tool | images/s (median, [min-max]) | vs ours default | ms/image: "
        + " / ".join(STAGE_NAMES)
        + " | time / network time | persons | peak RSS MiB (median [min-max]) | load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results.values():
        low, high = result.spread
        stages = result.stage_ms_per_image()
        stage_text = " / ".join(_fmt(stages[s], 1) for s in STAGE_NAMES)
        label = f"{result.tool.label}" + (f" *({result.tool.note})*" if result.tool.note else "")
        lines.append(
            f"| {label} | {_fmt(result.images_per_second, 3)} [{_fmt(low, 3)}-{_fmt(high, 3)}] | "
            f"{_fmt(result.images_per_second / base_rate, 2)}x | {stage_text} | "
            f"{_fmt(result.network_share, 3)}x | {sum(result.persons)} | "
            f"{_fmt(result.peak_rss_mib, 0)} {_rss_range(result)} | {_fmt(result.load_s, 1)} |"
        )
    return lines


def _network_ratio(results: dict[str, harness.ToolResult]) -> tuple[float, float, float] | None:
    """(ours s/image, networks-alone s/image, ratio) from the median per-image times."""
    ours = results.get("ours")
    if ours is None or ours.networks is None:
        return None
    net = ours.networks
    pose = np.minimum(net["pose_batched_s"], net["pose_per_person_s"])
    networks = float(np.sum(np.asarray(net["detector_s"]) + pose))
    total = float(np.sum(ours.median_image_seconds()))
    return total / len(ours.persons), networks / len(ours.persons), total / networks


def _targets(suite: SuiteResults) -> list[str]:
    lines = ["## Targets (issue 8)", "", "| target | configuration | measured | met |", "|---|---|---|---|"]
    for configuration in suite.configurations:
        results = suite.results[configuration.key]
        if "ours" in results:
            share = results["ours"].network_share
            lines.append(
                f"| end to end <= 1.1x the two networks' own time (inside the same passes) | "
                f"{configuration.key} | {share:.3f}x | {_yes(share <= 1.1)} |"
            )
        ratio = _network_ratio(results)
        if ratio is not None:
            ours_s, net_s, value = ratio
            lines.append(
                f"| end to end <= 1.1x the two networks alone (timed separately, prepared inputs) | "
                f"{configuration.key} | {ours_s * 1000:.0f} ms vs {net_s * 1000:.0f} ms per image = "
                f"{value:.3f}x | {_yes(value <= 1.1)} |"
            )
        alternatives = [results[k] for k in ("reference", "rtmlib") if k in results]
        if alternatives and "ours" in results:
            fastest = max(alternatives, key=lambda r: r.images_per_second)
            for key in ("ours", "ours-reference"):
                if key not in results:
                    continue
                target = (
                    f"| images/s >= 1.1x the faster of rtmlib and the reference loop ({fastest.tool.key}) | "
                )
                if results[key].persons != fastest.persons:
                    lines.append(
                        f"{target}{configuration.key}, {key} | not comparable: {sum(results[key].persons)} "
                        f"persons vs {sum(fastest.persons)} (BGR detector input finds others) | n/a |"
                    )
                    continue
                value = results[key].images_per_second / fastest.images_per_second
                lines.append(f"{target}{configuration.key}, {key} | {value:.3f}x | {_yes(value >= 1.1)} |")
            lines.append(
                f"| that ratio with zero overhead around networks running at the alternative's speed: "
                f"{fastest.tool.key}'s time / its own network time | {configuration.key} | "
                f"{fastest.network_share:.3f}x | n/a |"
            )
            ours_rss = results["ours"].peak_rss_mib
            lowest = min(r.peak_rss_mib for r in alternatives)
            lines.append(
                f"| peak RSS no higher than the alternatives | {configuration.key} | "
                f"ours {ours_rss:.0f} MiB, lowest alternative {lowest:.0f} MiB | {_yes(ours_rss <= lowest)} |"
            )
    for configuration_key, first, second, comparison in suite.comparisons:
        if first in ("ours", "ours-reference"):
            identical = (
                comparison.keypoints_identical and comparison.scores_identical and comparison.maps_identical
            )
            lines.append(
                f"| identical keypoints and maps: {first} vs {second} | {configuration_key} | "
                f"keypoints {_yes(comparison.keypoints_identical)}, "
                f"scores {_yes(comparison.scores_identical)}, "
                f"maps {_yes(comparison.maps_identical)} | {_yes(identical)} |"
            )
    return [*lines, ""]


def _comparisons(suite: SuiteResults) -> list[str]:
    lines = [
        "## Output identity",
        "",
        "Keypoints (N x 133 x 2, detection-image pixels), scores and the control map of every image, "
        "compared element for element after the warm-up pass.",
        "",
        "| configuration | tool | against | same persons | keypoints identical | scores identical | "
        "maps identical | max / median keypoint distance px |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, first, second, c in suite.comparisons:
        lines.append(
            f"| {key} | {first} | {second} | {_yes(c.same_persons)} | {_yes(c.keypoints_identical)} | "
            f"{_yes(c.scores_identical)} | {_yes(c.maps_identical)} | "
            f"{_fmt(c.max_keypoint_difference, 4)} / {_fmt(c.median_keypoint_difference, 4)} |"
        )
    lines += [
        "",
        "rtmlib 0.0.16 scores a keypoint with the mean of the two SimCC maxima (the reference: the "
        "minimum), so its scores differ by design; its maps are drawn in its own style. easy_dwpose "
        "returns the map at the input size, not at 512.",
        "",
    ]
    return lines


def _faster_modes(suite: SuiteResults) -> list[str]:
    lines = [
        "## Faster modes (outputs change; cost measured where it can be here)",
        "",
        "| mode | configuration | images/s | speed-up vs default |",
        "|---|---|---|---|",
    ]
    for configuration in suite.configurations:
        results = suite.results[configuration.key]
        base = results.get("ours")
        for result in results.values():
            if result.tool.note == "faster mode" and base is not None:
                lines.append(
                    f"| {result.tool.label} | {configuration.key} | {_fmt(result.images_per_second, 3)} | "
                    f"{_fmt(result.images_per_second / base.images_per_second, 2)}x |"
                )
    if suite.video:
        video = suite.video
        lines.append(
            f"| video: detection every 4 frames (keypoint boxes in between), {video['det_model']} + "
            f"{video['pose_model']} | one person, {video['frames']} frames | {_fmt(video[4], 3)} frames/s | "
            f"{_fmt(video[4] / video[1], 2)}x (every frame: {_fmt(video[1], 3)} frames/s) |"
        )
    lines += ["", "Accuracy cost:", ""]
    for label, recall in suite.recalls.items():
        lines.append(f"- {label}: recall {recall} annotated persons (area > 1024, IoU >= 0.5, val5 at 512)")
    for label, deviation in suite.deviations.items():
        lines.append(f"- {label}: {deviation}")
    lines += [
        "",
        "The int8 models are made by `dwpose_ctrl.quantize` (onnxruntime static quantisation, QDQ, "
        "per-channel int8 weights, uint8 activations) calibrated on the two portraits only, so val5 "
        "stays unseen. Configuration A quantises only the pose model, because the int8 YOLOX-Nano loses "
        "recall (above; percentile or entropy calibration and keeping the prediction convolutions in "
        "float32 did not recover it with two calibration images) while the Nano is a small share of the "
        "time; configuration B quantises both, as YOLOX-L is most of the time there. "
        "The pose networks have random weights here, so their keypoint deviation says "
        "how far int8 moves the argmax of a random network, not the accuracy of the real DWPose-l; "
        "the detector recall is measured with the real YOLOX-Nano weights. The smaller students "
        "(DWPose-m/s/t at 256x192) cannot be scored here without their real weights; their published "
        "COCO-WholeBody AP is lower than DWPose-l's. Detection every N frames trades detection of "
        "persons entering the frame for speed; its keypoints between detections come from boxes "
        "around the previous frame's keypoints.",
        "",
    ]
    return lines


def _commands(suite: SuiteResults) -> list[str]:
    lines = [
        COMMANDS_HEADING,
        "",
        "Regenerate this file (about 10 minutes on 2 cores; the first run also creates "
        "`benchmarks/.venv-alt` and the random-weight models in `benchmarks/.cache/`):",
        "",
        "```bash",
        f"python -m benchmarks --rounds {suite.rounds}",
        "```",
        "",
        "Each tool runs in its own process, driven over JSON lines by `benchmarks/harness.py`:",
        "",
        "```bash",
        "python -m benchmarks.ours_runner                                  # dwpose-ctrl",
        "benchmarks/.venv-alt/bin/python benchmarks/alternatives/reference_loop.py     # dwposes",
        "benchmarks/.venv-alt/bin/python benchmarks/alternatives/rtmlib_runner.py      # rtmlib",
        "benchmarks/.venv-alt/bin/python benchmarks/alternatives/easy_dwpose_runner.py # easy_dwpose",
        "```",
        "",
        "Models:",
        "",
    ]
    for name, path in suite.models.items():
        size = path.stat().st_size / 1e6 if path.exists() else float("nan")
        lines.append(f"- {name}: `{path.name}` ({size:.1f} MB)")
    lines.append("")
    lines.append("Images: " + ", ".join(f"`{p.name}`" for p in suite.images))
    lines.append("")
    return lines


def _alternatives_notes() -> list[str]:
    return [
        "## How the alternatives are run",
        "",
        "- **Reference loop** (`dwposes==0.1.0`, the ControlNet annotator's `onnxdet.py`, `onnxpose.py`, "
        "`util.py` and `DWposeDetector` unchanged): its package imports torch only for `torch.no_grad` "
        "around ONNX calls, so a no-op stand-in replaces torch in its environment. It hard-codes a 640 "
        "detector input; for the 416 Nano its `inference_detector` is replaced by the same steps reading "
        "the input size from the model. One `session.run` per person, as in the annotator.",
        "- **rtmlib** (`rtmlib==0.0.16`, `Wholebody` solution, onnxruntime backend): detector score "
        "threshold set to the reference's 0.3 (its default 0.7 runs fewer persons). Its own detectors are "
        "person-only; with the 80-class COCO YOLOX its `human` mode would return boxes of every class, so "
        "the worker keeps the person class before calling its pose model. One `session.run` per person.",
        "- **easy_dwpose** (`easy_dwpose==1.0.2`): **cannot run offline as published**: its "
        "`DWposeDetector()` constructor downloads its own two ONNX files from the Hugging Face Hub and its "
        "detector hard-codes 640. The worker runs its unchanged `__call__` on an object whose `Wholebody` "
        "was built from the same local files (only the download is skipped), in the 640 configuration "
        "only; torch is replaced by a no-op stand-in as above.",
        "- All tools get the same decoded RGB image; rtmlib and the reference loop get it resized by the "
        "annotator's rule (SPEC 1), easy_dwpose and dwpose-ctrl resize it themselves (same rule).",
        "",
    ]


def _gpu_section() -> list[str]:
    return [
        "## GPU (torch backend, fp16 + batching vs a per-person fp32 loop)",
        "",
        "Not run here: the session that produced this file had no GPU. On a machine with CUDA run "
        "`python -m benchmarks.gpu` (writes `benchmarks/results_gpu.md`, included below when present); "
        'it builds `DWposeDetector(device="cuda")` as a user would (only the CPU onnxruntime '
        "installed, so the networks run on the torch backend), times fp32 and fp16 with batched "
        "frames and persons against a per-person fp32 torch-CUDA loop (the reference's structure) and "
        "reports images/s, video frames/s and the fraction of the GPU's fp16 peak that the pose model "
        "reaches (`--device cpu --quick` is a smoke run of the same code).",
        "",
    ]


def render_results(suite: SuiteResults) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks`; do not edit by hand. Speed is measured here, never "
        "asserted in unit tests. Same images, same ONNX files, one process per tool, "
        f"{suite.rounds} timed passes over all images per tool after one warm-up pass, tools alternating "
        "(the order rotates every round); images/s is the number of images divided by the median pass "
        "time, per-stage times are medians over the passes divided by the number of images. Peak RSS "
        "is the median over the timed worker and fresh processes that load the models and make one "
        "pass (a process's peak moves by up to ~100 MiB from one start to the next). The "
        "images are decoded before timing; each pass goes from the decoded RGB image to keypoints and "
        "a control map at detect and image resolution 512.",
        "",
        "Weights: the official `yolox_l.onnx` and `dw-ll_ucoco_384.onnx` cannot be downloaded on this "
        "machine, so the same architectures are exported with random weights (fixed seed) by the "
        "project's own export (`benchmarks/make_models.py`); network speed does not depend on weight "
        "values. The real YOLOX-Nano from `../shared/assets` gives real persons.",
        "",
        *_targets(suite),
        *_machine(suite),
    ]
    for configuration in suite.configurations:
        results = suite.results[configuration.key]
        lines += [
            f"## Configuration {configuration.key}: {configuration.title}",
            "",
            configuration.description,
            "",
        ]
        lines += _configuration_table(configuration, results)
        ratio = _network_ratio(results)
        if ratio is not None:
            ours_s, net_s, value = ratio
            lines += [
                "",
                f"The two networks alone (one detector run plus the pose runs, batched or one person at "
                f"a time, whichever is faster, on inputs prepared beforehand, timed after the passes) "
                f"take {net_s * 1000:.0f} ms per image; dwpose-ctrl's default pipeline takes "
                f"{ours_s * 1000:.0f} ms: {value:.3f}x. The column *time / network time* divides each "
                "tool's pass time by the time spent inside its own `session.run` calls in the same pass, "
                "which a busy machine distorts less.",
            ]
        lines.append("")
    lines += _comparisons(suite)
    lines += _alternatives_notes()
    lines += _faster_modes(suite)
    lines += _gpu_section()
    gpu_results = BENCHMARKS / "results_gpu.md"
    if gpu_results.exists():
        lines += [gpu_results.read_text().rstrip(), ""]
    lines += _included_sections()
    lines += _commands(suite)
    return "\n".join(lines).rstrip() + "\n"


def _included_sections() -> list[str]:
    lines = []
    for title, path in INCLUDED_SECTIONS:
        name = path.relative_to(BENCHMARKS.parent)
        if path.exists():
            lines += [f"{INCLUDED_MARKER} {name} -->", path.read_text().rstrip(), ""]
        else:
            lines += [f"## {title}", "", f"`{name}` has not been written yet.", ""]
    return lines


def refresh_included_sections(path: Path = BENCHMARKS / "RESULTS.md") -> Path:
    """Re-include the sections other parts of the project write, keeping the measured part as it is.

    Everything from the first included section up to ``## Exact commands`` is replaced by the
    current files; the speed measurements above it and the commands below are not touched.
    """
    text = path.read_text()
    start = text.find(INCLUDED_MARKER)
    # the suite's own heading: the last line that is exactly it (an included section may hold
    # "### Exact commands", which contains the same characters)
    end = text.rfind(f"\n{COMMANDS_HEADING}\n") + 1
    if start < 0 or end <= start:
        raise ValueError(
            f"{path} has no included sections before '{COMMANDS_HEADING}'; regenerate it with "
            "`python -m benchmarks`"
        )
    path.write_text(text[:start] + "\n".join(_included_sections()) + "\n" + text[end:])
    return path


def write_results(suite: SuiteResults, path: Path = BENCHMARKS / "RESULTS.md") -> Path:
    path.write_text(render_results(suite))
    return path
