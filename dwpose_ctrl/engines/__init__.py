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

from dwpose_ctrl.arguments import check_flag
from dwpose_ctrl.engines.item import JobSettings, SequenceSettings, Smoothing, process_item
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
from dwpose_ctrl.engines.report import FAILED, ItemResult, RunReport, json_text
from dwpose_ctrl.engines.storage import Storage, is_url, join, local_real_path, output_lock

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
    "SequenceSettings",
    "Smoothing",
    "Source",
    "Storage",
    "WorkItem",
    "discover",
    "plan",
    "process_item",
    "read_metadata",
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
    backend: str = "auto"
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


#: Longest sidecar caption read (bytes); a longer ``.txt`` is cut there.
MAX_CAPTION_BYTES = 1 << 20


def _caption(source: Source, storage: Storage) -> str:
    """The text of a sidecar ``.txt`` beside the photo (``a.jpg`` -> ``a.txt``), or ``""``.

    Only a regular file is read, and at most :data:`MAX_CAPTION_BYTES` of it.
    """
    location = source.location
    stem = location[: len(location) - len(posixpath.splitext(location)[1])]
    sidecar = stem + ".txt"
    if not storage.is_file(sidecar):
        return ""
    try:
        with storage.open_input(sidecar) as handle:
            data = handle.read(MAX_CAPTION_BYTES)
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip()


def read_metadata(output_root: str, storage: Storage) -> list[dict]:
    """The rows of an existing ``metadata.jsonl`` below ``output_root`` ([] when there is none).

    Raises ``ValueError`` naming the line when the file is not a metadata file, so that a run
    refuses before any work rather than lose the rows at the end.
    """
    location = join(output_root, METADATA_FILE)
    if not storage.exists(location):
        return []
    try:
        text = storage.read_bytes(location).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the existing {location}: {error}; fix or remove it") from error
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            row = None
        if not (
            isinstance(row, dict)
            and isinstance(row.get("file_name"), str)
            and isinstance(row.get("conditioning_image_file_name"), str)
        ):
            raise ValueError(
                f"{location} line {number} is not a metadata row (a JSON object with file_name and "
                "conditioning_image_file_name); new rows are merged into this file: fix or remove it"
            )
        rows.append(row)
    return rows


def write_metadata(
    items: list[WorkItem], output_root: str, storage: Storage, previous: list[dict] | None = None
) -> int:
    """Write ``metadata.jsonl`` for the done image items, merged with its earlier rows; row count.

    One row per photo: ``file_name`` (the copy of the photo under ``images/``),
    ``conditioning_image_file_name`` (its control map) and ``text`` (the caption), paths relative
    to ``output_root``: the layout the ``datasets`` imagefolder loader reads, giving ``image``,
    ``conditioning_image`` and ``text`` columns for diffusers' ``train_controlnet.py``.

    Rows already in the file (``previous``, read now when None) are kept while both of their
    files exist, unless this run wrote a row for the same photo copy or map; so rendering a dataset
    in batches adds rows and never loses any. Rows are sorted by ``file_name``. Names that are not
    UTF-8 are escaped as :func:`~dwpose_ctrl.engines.report.json_text` says.
    """
    if previous is None:
        previous = read_metadata(output_root, storage)
    rows: dict[str, dict] = {}
    for item in items:
        if item.kind != "image" or item.photo_copy is None or not is_done(item, storage):
            continue
        rows[_relative_to(output_root, item.photo_copy)] = {
            "file_name": _relative_to(output_root, item.photo_copy),
            "conditioning_image_file_name": _relative_to(output_root, item.final),
            "text": _caption(item.source, storage),
        }
    maps = {row["conditioning_image_file_name"] for row in rows.values()}
    for row in previous:
        if row["file_name"] in rows or row["conditioning_image_file_name"] in maps:
            continue
        files = (row["file_name"], row["conditioning_image_file_name"])
        if all(storage.is_file(join(output_root, *name.split("/"))) for name in files):
            rows[row["file_name"]] = row
    lines = [json_text(rows[name]) for name in sorted(rows)]
    storage.write_bytes(join(output_root, METADATA_FILE), "".join(line + "\n" for line in lines).encode())
    return len(lines)


def _unsafe_items(items: list[WorkItem]) -> tuple[list[WorkItem], list[Problem]]:
    """Items whose outputs would replace one of the inputs (a file named inside the output)."""
    inputs = {local_real_path(item.source.location) for item in items} - {None}
    safe, problems = [], []
    for item in items:
        outputs = [item.json, item.overlay, item.photo_copy, item.final]
        clash = next((out for out in outputs if out is not None and local_real_path(out) in inputs), None)
        if clash is None:
            safe.append(item)
        else:
            problems.append(
                Problem(
                    item.source.location,
                    f"its output {clash} would replace an input file; give an output folder (-o) that "
                    "holds no input",
                )
            )
    return safe, problems


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

    Inputs that cannot even be planned (missing, symlink loops, FIFOs, inside the output folder,
    holding no image or video, a named file whose output would replace an input) are reported as
    failed. The local output folder is locked for the run (:func:`~dwpose_ctrl.engines.storage.output_lock`):
    a second run into it raises :class:`~dwpose_ctrl.engines.report.EngineError` before any work,
    as does an output folder that cannot be written (``ValueError``).
    ``engine`` is ``"local"`` or ``"ray"`` (``ray_options`` go to :class:`RayEngine`); the local
    engine estimates up to ``batch_size`` images (or frames of a video) per batched call; the Ray
    engine runs each of its ``ray_options["batch_size"]`` item batches through one call.
    """
    job = job or JobSettings()
    storage = storage or Storage()
    overwrite = check_flag("overwrite", overwrite)
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if not is_url(output_root) and os.path.exists(output_root) and not os.path.isdir(output_root):
        raise ValueError(f"the output {output_root!r} is a file; give a folder (it is created if missing)")
    inputs = list(inputs)
    sources, problems = discover(inputs, storage, exclude=[output_root])
    if not sources and not problems:
        problems = [Problem(entry, "no image or video file found") for entry in inputs]
    unplanned: list[Problem] = []
    items, unsafe = _unsafe_items(plan(sources, output_root, job.outputs, unplanned))
    problems = problems + unplanned + unsafe
    with output_lock(output_root):
        previous_metadata = read_metadata(output_root, storage) if job.outputs.metadata else []
        if not is_url(output_root):
            storage.check_folder_writable(output_root, f"into the output folder {output_root!r}")
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
            write_metadata(items, output_root, storage, previous_metadata)
    return report
