"""Decoding ahead: a producer (the sampler) in a background thread hands items to a consumer (faces and
detectors) on the calling thread through a bounded queue, so decoding frame i+1 overlaps the work on frame i
while at most `depth` decoded frames wait. FFmpeg, swscale, OpenCV, onnxruntime and torch release the GIL
in their heavy calls, so the two threads do run at the same time.

The consumer runs on the calling thread (Celery's soft time limit is raised there). An exception on either
side stops both: the producer's `put` raises `Cancelled` once the consumer has failed, and the producer's
own exception is raised again on the calling thread after the consumer has seen what came before it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

POLL_S = 0.05  # how often a blocked producer looks whether the consumer gave up


class Cancelled(Exception):
    """Raised inside the producer when the consumer has stopped."""


class _End:
    """Queued after the producer's last item."""


class Prefetcher(Generic[T, R]):
    def __init__(self, produce: Callable[[Callable[[T], None]], R], depth: int) -> None:
        self._produce = produce
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._result: R | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dfw-decode-ahead", daemon=True)

    def _put(self, item: T | _End) -> None:
        while True:
            if self._stopped.is_set():
                raise Cancelled
            try:
                self._queue.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            self._result = self._produce(self._put)
        except Cancelled:
            return
        except BaseException as exc:  # handed to the consumer's thread
            self._error = exc
        with contextlib.suppress(Cancelled):
            self._put(_End())

    def run(self, consume: Callable[[T], None]) -> R:
        self._thread.start()
        try:
            while not isinstance(item := self._queue.get(), _End):
                consume(item)
        finally:
            self._stopped.set()
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # set when the producer returned normally


def run_ahead(produce: Callable[[Callable[[T], None]], R], consume: Callable[[T], None], depth: int) -> R:
    """`produce(put)` with every `put(item)` handed to `consume(item)`; returns what `produce` returns.

    depth > 0: `produce` runs in a background thread, at most `depth` items wait between the two.
    depth 0: `produce` runs on this thread and `put` is `consume` (no overlap, nothing waits).
    """
    if depth <= 0:
        return produce(consume)
    return Prefetcher(produce, depth).run(consume)
