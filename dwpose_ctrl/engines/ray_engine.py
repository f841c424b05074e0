"""The Ray Data engine: the same work items, spread over a Ray cluster (or a local Ray instance).

The driver plans the items and skips the done ones exactly like the local engine; the items
still to do become a Ray dataset that a pool of actors maps over, one detector per actor (one
actor per GPU on CUDA), each batch of items handled by the shared
:func:`~dwpose_ctrl.engines.item.process_items` (its images in one network call). Outputs are written by
the workers directly (atomically) to the output location, which must therefore be reachable by
every node: a shared folder or object storage (``s3://...``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dwpose_ctrl.engines.item import JobSettings, process_items
from dwpose_ctrl.engines.local import ResultCallback, split_done
from dwpose_ctrl.engines.plan import WorkItem
from dwpose_ctrl.engines.pose import PoseEstimator
from dwpose_ctrl.engines.report import INTERRUPTED, EngineError, ItemResult, RunReport, escape_surrogates
from dwpose_ctrl.engines.storage import Storage
from dwpose_ctrl.extras import require


class StopFlag:
    """Shared by the driver and the actors (as a Ray actor): set once the run is asked to stop."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class RenderActor:
    """A Ray Data callable class: builds one estimator when the actor starts, then maps batches.

    Each batch goes through :func:`~dwpose_ctrl.engines.item.process_items`: its images in one
    network call, its videos with as many frames per call as the batch has items. ``stop_flag``
    (a :class:`StopFlag` actor) is asked at the start of each batch and polled in the background;
    once it is set, items not yet begun are reported interrupted and a video in progress stops, so
    every result says what is on disk.
    """

    def __init__(
        self,
        estimator_factory: Callable[[], PoseEstimator],
        job: JobSettings,
        storage: Storage,
        stop_flag=None,
        frames_per_call: int = 1,
    ):
        self.estimator = estimator_factory()
        self.job = job
        self.storage = storage
        self.frames_per_call = frames_per_call
        self.stop = threading.Event()
        self.stop_flag = stop_flag
        if stop_flag is not None:
            threading.Thread(target=self._watch, daemon=True).start()

    def _check_stop(self) -> None:
        """Ask the driver's flag once (a lost or slow answer counts as not stopped)."""
        import ray

        with contextlib.suppress(Exception):
            if ray.get(self.stop_flag.is_set.remote(), timeout=5):
                self.stop.set()

    def _watch(self) -> None:
        while not self.stop.wait(0.5):
            self._check_stop()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        items: list[WorkItem] = [pickle.loads(payload) for payload in batch["item"]]
        if self.stop_flag is not None and not self.stop.is_set():
            # a batch that starts after the stop never begins (the background poll is for videos)
            self._check_stop()
        results = process_items(
            items, self.estimator, self.job, self.storage, self.stop, self.frames_per_call
        )
        return {
            "index": [int(index) for index in batch["index"]],
            # Arrow strings must be UTF-8: names that are not travel escaped, the driver has them
            "location": [escape_surrogates(result.location) for result in results],
            "status": [result.status for result in results],
            "reason": [escape_surrogates(result.reason) for result in results],
            "frames": [result.frames for result in results],
            "seconds": [result.seconds for result in results],
        }


def resolve_resources(
    estimator_factory, workers: int | None, gpus_per_worker: float | None, cluster_gpus: float
) -> tuple[int, float, Callable[[], PoseEstimator]]:
    """Actors, GPUs per actor and the factory each actor calls.

    With a CUDA device (the factory's ``device``) and no explicit choice, each actor takes one
    whole GPU and there is one actor per GPU of the cluster; Ray then shows each actor only its
    own GPU, so a ``"cuda:N"`` device becomes ``"cuda"`` in the actors. CPU runs are unchanged
    (one actor unless told otherwise, no GPU).
    """
    device = str(getattr(estimator_factory, "device", "cpu"))
    on_cuda = device.startswith("cuda")
    gpus = (1.0 if on_cuda else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if workers is None:
        workers = max(1, int(cluster_gpus // gpus)) if gpus > 0 else 1
    if gpus > 0 and device != "cuda" and on_cuda and dataclasses.is_dataclass(estimator_factory):
        estimator_factory = dataclasses.replace(estimator_factory, device="cuda")
    return workers, gpus, estimator_factory


@dataclass
class RayEngine:
    """Runs work items on Ray Data with ``workers`` actors (one detector each).

    ``address``: ``None`` starts a local Ray instance (or uses the one already initialised),
    ``"auto"`` joins the cluster this machine belongs to, ``"ray://host:10001"`` a remote one.
    ``batch_size`` items go to an actor at a time and through the networks in one call (a video's
    frames as many at a time); ``cpus_per_worker`` / ``gpus_per_worker`` are the resources each
    actor reserves. ``None`` for ``workers`` / ``gpus_per_worker`` means: with a CUDA device, one
    actor per GPU of the cluster holding one GPU each; otherwise one actor and no GPU
    (:func:`resolve_resources`). ``quiet`` silences Ray's own log lines and progress bars.
    """

    estimator_factory: Callable[[], PoseEstimator]
    job: JobSettings
    storage: Storage
    address: str | None = None
    workers: int | None = None
    batch_size: int = 4
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    init_kwargs: dict | None = None
    show_progress: bool = True
    quiet: bool = False

    def run(
        self,
        items: list[WorkItem],
        overwrite: bool = False,
        stop: threading.Event | None = None,
        on_result: ResultCallback | None = None,
    ) -> RunReport:
        ray = require("ray", "ray", "--engine ray (the Ray engine)")

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
                quiet = {"logging_level": logging.ERROR, "log_to_driver": False} if self.quiet else {}
                ray.init(address=self.address, **{**quiet, **(self.init_kwargs or {})})
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = self.show_progress and not self.quiet
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
        """Every row's result; after ``stop`` the actors finish only what they have begun."""
        cluster = ray.cluster_resources()
        workers, gpus, factory = resolve_resources(
            self.estimator_factory, self.workers, self.gpus_per_worker, cluster.get("GPU", 0)
        )
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        for name, wanted, flag in (("GPU", gpus, "gpus"), ("CPU", self.cpus_per_worker, "cpus")):
            largest = max((node.get(name, 0) for node in nodes), default=0)
            if wanted > largest:
                # Ray would wait for ever for a node that can hold one actor
                raise EngineError(
                    f"each actor needs {wanted:g} {name}(s) but no node of the Ray cluster has that many "
                    f"(the largest has {largest:g}); "
                    f"lower --ray-{flag}-per-worker, use --device cpu, or add nodes that have them"
                )
        stop_flag = ray.remote(num_cpus=0)(StopFlag).remote()
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * workers)))
        mapped = dataset.map_batches(
            RenderActor,
            fn_constructor_kwargs={
                "estimator_factory": factory,
                "job": self.job,
                "storage": self.storage,
                "stop_flag": stop_flag,
                "frames_per_call": self.batch_size,
            },
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=self.cpus_per_worker,
            num_gpus=gpus or None,
        )
        finished = threading.Event()

        def pass_stop_on() -> None:
            while not finished.is_set():
                if stop.wait(0.1):
                    stop_flag.set.remote()
                    return

        watcher = threading.Thread(target=pass_stop_on, name="dwpose-ray-stop", daemon=True)
        watcher.start()
        with _quiet_loggers(self.quiet), contextlib.ExitStack() as cleanup:
            cleanup.callback(watcher.join)
            cleanup.callback(finished.set)
            # block by block, without prefetching: iter_rows() holds each finished block back until
            # the next one is ready, so results (progress, a stop) would lag one item behind
            columns = ("index", "location", "status", "reason", "frames", "seconds")
            for block in mapped.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"):
                for index, location, status, reason, frames, seconds in zip(
                    *(block[name] for name in columns), strict=True
                ):
                    yield (
                        int(index),
                        ItemResult(str(location), str(status), str(reason), int(frames), float(seconds)),
                    )


@contextlib.contextmanager
def _quiet_loggers(quiet: bool) -> Iterator[None]:
    """With ``quiet``, Ray's loggers in this process print errors only (restored afterwards)."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
