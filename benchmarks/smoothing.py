"""Temporal smoothing of keypoints on synthetic trajectories with known truth.

Every keypoint of one person follows a smooth truth (a sum of three sines, 0.2-2 Hz, amplitudes
10-60 px, at 30 frames/s). The "detector" output is the truth plus Gaussian jitter whose standard
deviation is ``jitter * 0.5 / score`` (scores uniform in [0.5, 1], so less confident points are
noisier), with dropouts: runs of 1-3 frames (and a few of 8) where the score is 0.1, i.e. the
point is not visible, and the position is the truth plus 25 px noise (what a pose model gives for
a point it cannot see). Compared, at two jitter levels:

* ``none``: the raw output;
* ``one-euro``: :class:`dwpose_ctrl.video.OneEuroFilter` with the ``dwpose-render --smooth-method
  one-euro`` defaults (min cutoff 1 Hz, beta 0), fed every frame as a live stream is;
* ``one-euro tuned``: the same filter with the (min cutoff, beta) of a grid (0.5-8 Hz x 0-1) that
  gives the lowest RMS error against the truth of that very trajectory set (an upper bound on
  what tuning can do for it);
* ``offline``: :func:`dwpose_ctrl.sequence.fill_track_gaps` (gaps up to ``--fill-gaps`` frames)
  then :func:`dwpose_ctrl.sequence.smooth_track` with its defaults (radius 4, degree 2).

Measured: the RMS error to the truth on the frames where the point is visible in the input, the
RMS error on the dropped frames the offline smoother filled (gaps <= the limit), the mean absolute
acceleration |x[t+1] - 2 x[t] + x[t-1]| over visible triples (the truth's own is given for scale),
and the lag: the shift (in frames, -5..5) that best aligns the output with the truth.

Run: ``python -m benchmarks.smoothing [--frames 600] [--seeds 5]`` (writes
``benchmarks/results_smoothing.md``, included in RESULTS.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwpose_ctrl.sequence import POINTS_PER_PERSON, Track, fill_track_gaps, smooth_track
from dwpose_ctrl.video import OneEuroFilter

FPS = 30.0
MAX_GAP = 4
RESULTS = Path(__file__).resolve().parent / "results_smoothing.md"


@dataclass(frozen=True)
class Trajectories:
    """Truth (T, K, 2), the noisy observation (T, K, 3) with scores, and the dropout mask (T, K)."""

    truth: np.ndarray
    observed: np.ndarray
    dropped: np.ndarray


def synthetic(frames: int, jitter: float, seed: int, keypoints: int = POINTS_PER_PERSON) -> Trajectories:
    """Smooth truth + confidence-dependent jitter + dropouts (see the module docstring)."""
    rng = np.random.default_rng(seed)
    time = np.arange(frames) / FPS
    truth = np.zeros((frames, keypoints, 2))
    for _ in range(3):
        frequency = rng.uniform(0.2, 2.0, size=(keypoints, 2))
        amplitude = rng.uniform(10, 60, size=(keypoints, 2)) / 3
        phase = rng.uniform(0, 2 * np.pi, size=(keypoints, 2))
        truth += amplitude * np.sin(2 * np.pi * frequency * time[:, None, None] + phase)
    truth += rng.uniform(100, 400, size=(keypoints, 2))
    scores = rng.uniform(0.5, 1.0, size=(frames, keypoints))
    noisy = truth + rng.standard_normal(truth.shape) * (jitter * 0.5 / scores)[..., None]
    dropped = np.zeros((frames, keypoints), bool)
    for keypoint in range(keypoints):
        for _ in range(frames // 40):
            start = int(rng.integers(1, frames - 12))
            length = 8 if rng.uniform() < 0.1 else int(rng.integers(1, 4))
            dropped[start : start + length, keypoint] = True
    scores[dropped] = 0.1
    noisy[dropped] = truth[dropped] + rng.standard_normal((int(dropped.sum()), 2)) * 25.0
    return Trajectories(truth, np.concatenate([noisy, scores[..., None]], axis=-1), dropped)


ONE_EURO_GRID = tuple((cutoff, beta) for cutoff in (0.5, 1, 2, 4, 8) for beta in (0, 0.01, 0.03, 0.1, 0.3, 1))


def one_euro(observed: np.ndarray, min_cutoff: float = 1.0, beta: float = 0.0) -> np.ndarray:
    smoother = OneEuroFilter(min_cutoff=min_cutoff, beta=beta)
    return np.stack([smoother(frame[:, :2], index / FPS) for index, frame in enumerate(observed)])


def one_euro_tuned(observed: np.ndarray, truth: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """One-Euro with the grid setting of lowest RMS error against ``truth``."""
    candidates = [one_euro(observed, cutoff, beta) for cutoff, beta in ONE_EURO_GRID]
    return min(candidates, key=lambda values: _rms(values - truth, visible))


def offline(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed positions and the filled mask."""
    frames = len(observed)
    track = Track(0, observed, np.ones(frames, bool), np.zeros(observed.shape[:2], bool))
    track = smooth_track(fill_track_gaps(track, MAX_GAP))
    return track.points[..., :2], track.filled


def _rms(error: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(error[mask] ** 2, axis=-1)))) if mask.any() else float("nan")


def _acceleration(values: np.ndarray, mask: np.ndarray) -> float:
    triple = mask[:-2] & mask[1:-1] & mask[2:]
    acceleration = np.linalg.norm(values[2:] - 2 * values[1:-1] + values[:-2], axis=-1)
    return float(acceleration[triple].mean())


def _lag(values: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> int:
    """The shift s (frames) minimising the error of values[t] against truth[t - s]."""
    errors = {}
    for shift in range(-5, 6):
        inner = slice(5, len(truth) - 5)
        shifted = np.roll(truth, shift, axis=0)
        errors[shift] = _rms((values - shifted)[inner], mask[inner])
    return min(errors, key=errors.get)


def measure(frames: int, jitter: float, seed: int) -> dict[str, dict[str, float]]:
    data = synthetic(frames, jitter, seed)
    visible = ~data.dropped
    outputs = {
        "none": data.observed[..., :2],
        "one-euro": one_euro(data.observed),
        "one-euro tuned": one_euro_tuned(data.observed, data.truth, visible),
    }
    outputs["offline"], filled = offline(data.observed)
    rows = {}
    for name, values in outputs.items():
        error = values - data.truth
        rows[name] = {
            "rms": _rms(error, visible),
            "rms_filled": _rms(error, filled) if name == "offline" else float("nan"),
            "acceleration": _acceleration(values, visible | (filled if name == "offline" else False)),
            "lag": _lag(values, data.truth, visible),
            "filled": float(filled.sum() / max(data.dropped.sum(), 1)) if name == "offline" else float("nan"),
        }
    rows["truth"] = {"acceleration": _acceleration(data.truth, visible)}
    return rows


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def run(frames: int, seeds: int, jitters: tuple[float, ...]) -> str:
    lines = [
        "## Offline smoothing vs One-Euro (issue 15)",
        "",
        f"`python -m benchmarks.smoothing --frames {frames} --seeds {seeds}`: synthetic trajectories "
        f"with known truth ({POINTS_PER_PERSON} keypoints x {frames} frames at 30 fps, sums of sines; "
        "jitter of standard deviation sigma * 0.5 / score with scores in [0.5, 1]; dropouts of 1-3 "
        "frames, a tenth of them 8 frames, with score 0.1 and 25 px noise). Means over "
        f"{seeds} seeds. RMS error in pixels on the frames where the point is visible in the input; "
        f"*filled RMS* on the dropped frames the offline smoother filled (gaps <= {MAX_GAP} frames; "
        "*filled* is the share of dropped frames filled, the rest were in longer gaps and stay "
        "empty); acceleration = mean |x[t+1] - 2x[t] + x[t-1]| in px/frame^2; lag = the shift in "
        "frames that best aligns the output with the truth.",
        "",
        "| jitter sigma (px) | method | RMS error | filled RMS | filled | mean abs. acceleration "
        "| lag (frames) |",
        "|---|---|---|---|---|---|---|",
    ]
    for jitter in jitters:
        per_seed = [measure(frames, jitter, seed) for seed in range(seeds)]
        for name in ("none", "one-euro", "one-euro tuned", "offline"):
            values = {key: float(np.mean([r[name][key] for r in per_seed])) for key in per_seed[0][name]}
            lags = sorted({r[name]["lag"] for r in per_seed})
            share = values["filled"]
            share_text = "-" if share != share else f"{100 * share:.0f} %"
            lines.append(
                f"| {jitter:g} | {name} | {_fmt(values['rms'])} | {_fmt(values['rms_filled'])} | "
                f"{share_text} | "
                f"{_fmt(values['acceleration'], 3)} | {', '.join(str(lag) for lag in lags)} |"
            )
        truth = float(np.mean([r["truth"]["acceleration"] for r in per_seed]))
        lines.append(f"| {jitter:g} | (truth) | 0 | - | - | {_fmt(truth, 3)} | 0 |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.smoothing", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--frames", type=int, default=600, help="frames per trajectory (default: %(default)s)"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="trajectory sets averaged (default: %(default)s)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file written")
    args = parser.parse_args(argv)
    text = run(args.frames, args.seeds, (2.0, 6.0))
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
