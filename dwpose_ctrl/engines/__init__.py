"""Rendering many files: discovery, output planning, the local and Ray engines, reports.

:func:`render_files` is what ``dwpose-render`` runs; use it from Python with any estimator
factory (a :class:`DetectorSpec` builds a :class:`~dwpose_ctrl.DWposeDetector`).
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dwpose_ctrl.engines.item import JobSettings, Smoothing, process_item
from dwpose_ctrl.engines.local import LocalEngine, ResultCallback
from dwpose_ctrl.engines.plan import (
    METADATA_FILE,
    OutputOptions,
    Problem,
    Source,
    WorkItem,
    discover,
    is_done,
    plan,
)
from dwpose_ctrl.engines.pose import DetectorEstimator, PoseEstimator, RenderSettings
from dwpose_ctrl.engines.report import FAILED, ItemResult, RunReport
from dwpose_ctrl.engines.storage import Storage, is_url, join

__all__ = [
    "DetectorEstimator",
    "DetectorSpec",
    "ItemResult",
    "JobSettings",
    "LocalEngine",
    "OutputOptions",
    "PoseEstimator",
    "Problem",
    "RenderSettings",
    "RunReport",
    "Smoothing",
    "Source",
    "Storage",
    "WorkItem",
    "discover",
    "plan",
    "process_item",
    "render_files",
    "write_metadata",
]


@dataclass(frozen=True)
class DetectorSpec:
    """A picklable recipe for a :class:`~dwpose_ctrl.DWposeDetector`, built where it runs.

    Calling it returns a :class:`~dwpose_ctrl.engines.pose.PoseEstimator`; each Ray actor calls it
    once, so every worker has its own detector.
    """

    det_model: str | None = None
    pose_model: str | None = None
    device: str = "cpu"
    backend: str = "onnxruntime"
    mode: str = "default"
    options: dict = field(default_factory=dict)

    def __call__(self) -> PoseEstimator:
        """Build the detector and load both models now, so that a bad model fails before any item."""
        from dwpose_ctrl.detector import DWposeDetector

        detector = DWposeDetector(
            det_model=self.det_model,
            pose_model=self.pose_model,
            device=self.device,
            backend=self.backend,
            mode=self.mode,
            **self.options,
        )
        _ = detector.det_backend.input_size, detector.pose_backend.input_size
        return DetectorEstimator(detector)


def _relative_to(root: str, location: str) -> str:
    if is_url(root):
        return posixpath.relpath(location, root.rstrip("/"))
    return os.path.relpath(location, root).replace(os.sep, "/")


def _caption(source: Source, storage: Storage) -> str:
    """The text of a sidecar ``.txt`` beside the photo (``a.jpg`` -> ``a.txt``), or ``""``."""
    location = source.location
    stem = location[: len(location) - len(posixpath.splitext(location)[1])]
    sidecar = stem + ".txt"
    if not storage.exists(sidecar):
        return ""
    return storage.read_bytes(sidecar).decode("utf-8", errors="replace").strip()


def write_metadata(items: list[WorkItem], output_root: str, storage: Storage) -> int:
    """Write ``metadata.jsonl`` for the done image items; return the number of rows.

    One row per photo: ``file_name`` (the copy of the photo under ``images/``),
    ``conditioning_image_file_name`` (its control map) and ``text`` (the caption), paths relative
    to ``output_root``: the layout the ``datasets`` imagefolder loader reads, giving ``image``,
    ``conditioning_image`` and ``text`` columns for diffusers' ``train_controlnet.py``.
    """
    lines = []
    for item in items:
        if item.kind != "image" or item.photo_copy is None or not is_done(item, storage):
            continue
        row = {
            "file_name": _relative_to(output_root, item.photo_copy),
            "conditioning_image_file_name": _relative_to(output_root, item.final),
            "text": _caption(item.source, storage),
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    storage.write_bytes(join(output_root, METADATA_FILE), ("\n".join(lines) + "\n" if lines else "").encode())
    return len(lines)


def render_files(
    inputs: Iterable[str],
    output_root: str,
    estimator_factory: Callable[[], PoseEstimator],
    job: JobSettings | None = None,
    *,
    storage: Storage | None = None,
    overwrite: bool = False,
    engine: str = "local",
    prefetch: int = 4,
    loaders: int = 2,
    batch_size: int = 4,
    ray_options: dict | None = None,
    stop: threading.Event | None = None,
    on_result: ResultCallback | None = None,
    on_plan: Callable[[list[WorkItem], list[Problem]], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> RunReport:
    """Render every input below ``output_root``; return the report (never raises for bad inputs).

    Inputs that cannot even be planned (missing, symlink loops, ...) are reported as failed.
    ``engine`` is ``"local"`` or ``"ray"`` (``ray_options`` go to :class:`RayEngine`); the local
    engine estimates up to ``batch_size`` images per batched call.
    """
    job = job or JobSettings()
    storage = storage or Storage()
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if not is_url(output_root) and os.path.exists(output_root) and not os.path.isdir(output_root):
        raise ValueError(f"the output {output_root!r} is a file; give a folder (it is created if missing)")
    sources, problems = discover(list(inputs), storage, exclude=[output_root])
    items = plan(sources, output_root, job.outputs)
    storage.remove_stale_partials(output_root)
    storage.remember_listing(output_root)
    if on_plan is not None:
        on_plan(items, problems)
    problem_results = [ItemResult(problem.location, FAILED, problem.reason) for problem in problems]
    for result in problem_results:
        if on_result is not None:
            on_result(result)
    if engine == "ray":
        from dwpose_ctrl.engines.ray_engine import RayEngine

        runner = RayEngine(estimator_factory, job, storage, **(ray_options or {}))
        report = runner.run(items, overwrite=overwrite, stop=stop, on_result=on_result)
    else:
        runner = LocalEngine(
            estimator_factory(), job, storage, prefetch=prefetch, loaders=loaders, batch_size=batch_size
        )
        report = runner.run(items, overwrite=overwrite, stop=stop, on_result=on_result, on_frame=on_frame)
    report.results[:0] = problem_results
    if job.outputs.metadata and not report.interrupted:
        write_metadata(items, output_root, storage)
    return report
