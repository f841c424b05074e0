"""The local engine: one process, decoding, inference and writing overlapped with threads.

Images are read, decoded and resized for detection by ``loaders`` threads up to ``prefetch``
items ahead of the inference, which is all the calling thread does (one detector, its runtimes
use the cores); with ``batch_size > 1`` it takes up to that many consecutive images at once and
estimates them in one batched call (when the estimator has ``estimate_many``, as
:class:`~dwpose_ctrl.engines.pose.DetectorEstimator` does); drawing, encoding and atomic writes
run in a background thread up to ``prefetch`` items behind. Videos stream
with the same overlap inside :func:`~dwpose_ctrl.engines.item.render_video`, ``batch_size`` frames
per batched call.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dwpose_ctrl.arguments import check_positive_int, is_integer
from dwpose_ctrl.engines.item import (
    JobSettings,
    LoadedImage,
    estimate_images,
    finish_image,
    process_item,
    read_image,
)
from dwpose_ctrl.engines.pipeline import BackgroundWorker
from dwpose_ctrl.engines.plan import WorkItem, is_done
from dwpose_ctrl.engines.pose import PoseEstimator
from dwpose_ctrl.engines.report import (
    DONE,
    FAILED,
    INTERRUPTED,
    SKIPPED,
    ItemResult,
    RunReport,
    describe_error,
)
from dwpose_ctrl.engines.storage import Storage

ResultCallback = Callable[[ItemResult], None]


def split_done(
    items: list[WorkItem], storage: Storage, overwrite: bool
) -> tuple[list[WorkItem], list[tuple[WorkItem, ItemResult]]]:
    """Items still to do, and (item, skipped result) for those whose outputs all exist already."""
    if overwrite:
        return list(items), []
    todo, skipped = [], []
    for item in items:
        if is_done(item, storage):
            skipped.append((item, ItemResult(item.source.location, SKIPPED, "all outputs exist")))
        else:
            todo.append(item)
    return todo, skipped


@dataclass
class LocalEngine:
    """Runs work items in this process. ``prefetch=0`` and ``loaders=0`` run every stage in turn.

    ``batch_size``: images, or frames of a video, estimated together in one call of the
    estimator's ``estimate_many`` (ignored by estimators without it); the results equal one at a time.
    """

    estimator: PoseEstimator
    job: JobSettings
    storage: Storage
    prefetch: int = 4
    loaders: int = 2
    batch_size: int = 4

    def __post_init__(self) -> None:
        """Counts are integers of any integer type (numpy's too), never floats or bools."""
        self.batch_size = check_positive_int("batch_size", self.batch_size)
        for name in ("prefetch", "loaders"):
            value = getattr(self, name)
            if not is_integer(value) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
            setattr(self, name, int(value))

    def run(
        self,
        items: list[WorkItem],
        overwrite: bool = False,
        stop: threading.Event | None = None,
        on_result: ResultCallback | None = None,
        on_frame: Callable[[], None] | None = None,
    ) -> RunReport:
        """Process ``items`` (skipping done ones unless ``overwrite``); stop early when ``stop`` is set."""
        stop = stop or threading.Event()
        todo, skipped = split_done(items, self.storage, overwrite)
        report = RunReport()
        lock = threading.Lock()
        order = {id(item): index for index, item in enumerate(items)}
        collected: list[tuple[int, ItemResult]] = []

        def record(item: WorkItem, result: ItemResult) -> None:
            with lock:
                collected.append((order[id(item)], result))
            if on_result is not None:
                on_result(result)

        for item, result in skipped:
            record(item, result)

        pool = (
            ThreadPoolExecutor(max_workers=self.loaders) if self.loaders > 0 and self.prefetch > 0 else None
        )
        writer = BackgroundWorker(self.prefetch, name="dwpose-writer")
        pending: deque[tuple[WorkItem, Future | None]] = deque()
        upcoming = iter(todo)

        def load(item: WorkItem) -> LoadedImage:
            return read_image(item, self.storage, self.job)

        def refill() -> None:
            while len(pending) < max(self.prefetch, 1):
                item = next(upcoming, None)
                if item is None:
                    return
                future = pool.submit(load, item) if pool is not None and item.kind == "image" else None
                pending.append((item, future))

        try:
            refill()
            while pending and not stop.is_set():
                item, future = pending.popleft()
                refill()
                if item.kind == "video":
                    result = process_item(
                        item, self.estimator, self.job, self.storage, stop, on_frame, self.batch_size
                    )
                    record(item, result)
                    continue
                batch = [(item, future)]
                while (
                    self._batches
                    and len(batch) < self.batch_size
                    and pending
                    and pending[0][0].kind == "image"
                ):
                    batch.append(pending.popleft())
                    refill()
                self._images(batch, writer, record)
        finally:
            for _, future in pending:
                if future is not None:
                    future.cancel()
            writer.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if stop.is_set():
            report.interrupted = True
            remaining = [item for item, _ in pending] + list(upcoming)
            for item in remaining:
                record(item, ItemResult(item.source.location, INTERRUPTED, "not started"))
        for _, result in sorted(collected, key=lambda pair: pair[0]):
            report.add(result)
        return report

    @property
    def _batches(self) -> bool:
        return self.batch_size > 1 and callable(getattr(self.estimator, "estimate_many", None))

    def _images(self, batch: list[tuple[WorkItem, Future | None]], writer: BackgroundWorker, record) -> None:
        """Load, estimate (batched when possible) and queue the writes of consecutive image items.

        When the batched call fails, each image is estimated alone, so only the bad one fails.
        """
        started = time.perf_counter()
        loaded_items: list[tuple[WorkItem, LoadedImage]] = []
        for item, future in batch:
            try:
                loaded = future.result() if future is not None else read_image(item, self.storage, self.job)
            except Exception as error:
                self._fail(item, error, started, record)
            else:
                loaded_items.append((item, loaded))
        found = estimate_images(
            self.estimator,
            [loaded.detection_image for _, loaded in loaded_items],
            [loaded.scale for _, loaded in loaded_items],
        )
        for (item, loaded), persons in zip(loaded_items, found, strict=True):
            if isinstance(persons, Exception):
                self._fail(item, persons, started, record)
            else:
                self._write(item, loaded, persons, started, writer, record)

    @staticmethod
    def _fail(item: WorkItem, error: Exception, started: float, record) -> None:
        seconds = time.perf_counter() - started
        record(item, ItemResult(item.source.location, FAILED, describe_error(error), seconds=seconds))

    def _write(
        self, item: WorkItem, loaded: LoadedImage, persons, started: float, writer: BackgroundWorker, record
    ) -> None:
        location = item.source.location

        def write() -> None:
            try:
                finish_image(item, loaded, persons, self.storage, self.job, self.estimator.keypoint_threshold)
            except Exception as error:
                result = ItemResult(
                    location, FAILED, describe_error(error), seconds=time.perf_counter() - started
                )
            else:
                result = ItemResult(location, DONE, frames=1, seconds=time.perf_counter() - started)
            record(item, result)

        writer.submit(write)
