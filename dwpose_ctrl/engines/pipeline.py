"""Overlapping decode, inference and encode with bounded queues and threads.

:func:`prefetch` runs a producer (decoding) in a thread, at most ``size`` results ahead of the
consumer; :class:`BackgroundWorker` runs tasks (encoding, writing) in a thread behind the
consumer, at most ``size`` tasks queued. Both pass exceptions back to the caller and never let
memory grow without bound. NumPy, OpenCV, PIL, PyAV and onnxruntime release the GIL in their heavy
parts, so the stages really run in parallel.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(source: Iterable[T], size: int) -> Iterator[T]:
    """Yield ``source``'s items, produced by a background thread at most ``size`` ahead.

    ``size=0`` iterates in the calling thread. Closing the generator early stops the producer
    at its next item.
    """
    if size <= 0:
        yield from source
        return
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for value in source:
                if not put(value):
                    return
        except BaseException as error:
            put(_Failure(error))
            return
        put(_END)

    thread = threading.Thread(target=produce, name="dwpose-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            value = buffer.get()
            if value is _END:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value
    finally:
        stop.set()
        thread.join()


class BackgroundWorker:
    """Run submitted callables in order in one background thread, at most ``size`` queued.

    ``size=0`` runs each task immediately in the caller's thread. The first exception a task
    raises is re-raised by the next :meth:`submit` or by :meth:`close`; later tasks are dropped.
    """

    def __init__(self, size: int, name: str = "dwpose-writer"):
        self._size = size
        self._error: BaseException | None = None
        self._cancelled = False
        self._queue: queue.Queue = queue.Queue(maxsize=max(size, 1))
        self._thread: threading.Thread | None = None
        if size > 0:
            self._thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is _END:
                return
            if self._error is None and not self._cancelled:
                try:
                    task()
                except BaseException as error:
                    self._error = error

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, task: Callable[[], object]) -> None:
        self._raise_pending()
        if self._thread is None:
            task()
            return
        self._queue.put(task)

    def cancel(self) -> None:
        """Drop the queued tasks, wait for the running one; errors are discarded."""
        self._cancelled = True
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
            self._thread = None
        self._error = None

    def close(self) -> None:
        """Wait for every queued task, then raise the first error if one happened."""
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
            self._thread = None
        self._raise_pending()
