"""The Ray Data engine: the same work items, spread over a Ray cluster (or a local Ray instance).

The driver plans the items and skips the done ones exactly like the local engine; the items
still to do become a Ray dataset that a pool of actors maps over, one detector per actor, each
item handled by the shared :func:`~dwpose_ctrl.engines.item.process_item`. Outputs are written by
the workers directly (atomically) to the output location, which must therefore be reachable by
every node: a shared folder or object storage (``s3://...``).
"""

from __future__ import annotations

import dataclasses
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dwpose_ctrl.engines.item import JobSettings, process_item
from dwpose_ctrl.engines.local import ResultCallback, split_done
from dwpose_ctrl.engines.plan import WorkItem
from dwpose_ctrl.engines.pose import PoseEstimator
from dwpose_ctrl.engines.report import INTERRUPTED, EngineError, ItemResult, RunReport, escape_surrogates
from dwpose_ctrl.engines.storage import Storage


class RenderActor:
    """A Ray Data callable class: builds one estimator when the actor starts, then maps items."""

    def __init__(self, estimator_factory: Callable[[], PoseEstimator], job: JobSettings, storage: Storage):
        self.estimator = estimator_factory()
        self.job = job
        self.storage = storage

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        columns: dict[str, list] = {
            "index": [],
            "location": [],
            "status": [],
            "reason": [],
            "frames": [],
            "seconds": [],
        }
        for index, payload in zip(batch["index"], batch["item"], strict=True):
            item: WorkItem = pickle.loads(payload)
            result = process_item(item, self.estimator, self.job, self.storage)
            columns["index"].append(int(index))
            # Arrow strings must be UTF-8: names that are not travel escaped, the driver has them
            columns["location"].append(escape_surrogates(result.location))
            columns["status"].append(result.status)
            columns["reason"].append(escape_surrogates(result.reason))
            columns["frames"].append(result.frames)
            columns["seconds"].append(result.seconds)
        return columns


@dataclass
class RayEngine:
    """Runs work items on Ray Data with ``workers`` actors (one detector each).

    ``address``: ``None`` starts a local Ray instance (or uses the one already initialised),
    ``"auto"`` joins the cluster this machine belongs to, ``"ray://host:10001"`` a remote one.
    ``batch_size`` items go to an actor at a time; ``cpus_per_worker`` / ``gpus_per_worker`` are the
    resources each actor reserves (give GPUs to run the detector with ``device="cuda"``).
    """

    estimator_factory: Callable[[], PoseEstimator]
    job: JobSettings
    storage: Storage
    address: str | None = None
    workers: int = 1
    batch_size: int = 4
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    init_kwargs: dict | None = None
    show_progress: bool = True

    def run(
        self,
        items: list[WorkItem],
        overwrite: bool = False,
        stop: threading.Event | None = None,
        on_result: ResultCallback | None = None,
    ) -> RunReport:
        import ray

        stop = stop or threading.Event()
        todo, skipped = split_done(items, self.storage, overwrite)
        order = {id(item): index for index, item in enumerate(items)}
        collected: list[tuple[int, ItemResult]] = []
        for item, result in skipped:
            collected.append((order[id(item)], result))
            if on_result is not None:
                on_result(result)
        report = RunReport()
        if todo:
            started_here = not ray.is_initialized()
            if started_here:
                ray.init(address=self.address, **(self.init_kwargs or {}))
            ray.data.DataContext.get_current().enable_progress_bars = self.show_progress
            try:
                rows = [{"index": order[id(item)], "item": pickle.dumps(item)} for item in todo]
                locations = {order[id(item)]: item.source.location for item in todo}
                for index, result in self._map(rows, stop, ray):
                    result = dataclasses.replace(result, location=locations[index])
                    collected.append((index, result))
                    if on_result is not None:
                        on_result(result)
            except ray.exceptions.RayError as error:
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                raise EngineError(
                    f"the Ray job failed: {lines[-1] if lines else type(error).__name__}"
                ) from error
            finally:
                if started_here:
                    ray.shutdown()
            if stop.is_set():
                report.interrupted = True
                finished = {index for index, _ in collected}
                for item in todo:
                    if order[id(item)] not in finished:
                        result = ItemResult(item.source.location, INTERRUPTED, "not finished")
                        collected.append((order[id(item)], result))
        for _, result in sorted(collected, key=lambda pair: pair[0]):
            report.add(result)
        return report

    def _map(self, rows: list[dict], stop: threading.Event, ray) -> Iterator[tuple[int, ItemResult]]:
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * self.workers)))
        mapped = dataset.map_batches(
            RenderActor,
            fn_constructor_kwargs={
                "estimator_factory": self.estimator_factory,
                "job": self.job,
                "storage": self.storage,
            },
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker or None,
        )
        for row in mapped.iter_rows():
            yield (
                int(row["index"]),
                ItemResult(
                    str(row["location"]),
                    str(row["status"]),
                    str(row["reason"]),
                    int(row["frames"]),
                    float(row["seconds"]),
                ),
            )
            if stop.is_set():
                return
