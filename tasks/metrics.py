"""Prometheus metrics of the workers, in prometheus_client's multiprocess mode.

`dfw worker --metrics-port N` (or `DFW_METRICS_PORT`) points `PROMETHEUS_MULTIPROC_DIR` at a clean folder
before Celery forks its pool, so that every pool process writes its samples to files there; a small HTTP
server in the main process serves the sum over processes, plus the depth of the broker queues read from
Redis on each scrape. Without a metrics port the same metrics are plain in-process values nobody reads.

This module imports prometheus_client only: no torch (GPU memory is read only when a detector already
imported it), no Celery, no Redis client at import time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# 5 ms to 10 min: a face crop batch on CPU is tens of ms, a long video's decode can take minutes.
STAGE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

JOBS = Counter(
    "dfw_jobs",
    "detect_media tasks by final status (done, failed, duplicate, skipped, error) and error code",
    ["status", "code"],
)
STAGE_SECONDS = Histogram(
    "dfw_stage_seconds",
    "Time spent per stage: download, probe, decode, faces, detector:NAME, aggregate, persist, explain",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
DETECTOR_LOAD_FAILURES = Counter(
    "dfw_detector_load_failures",
    "Detectors disabled at process start (weights missing, load error)",
    ["detector"],
)
GPU_MEMORY = Gauge(
    "dfw_gpu_memory_bytes",
    "CUDA memory allocated by torch in the worker processes, summed per device",
    ["device"],
    multiprocess_mode="livesum",
)


@contextmanager
def time_stage(stage: str) -> Iterator[None]:
    """Observe the duration of the block under `stage`, whether it raised or not."""
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=stage).observe(time.perf_counter() - start)


def observe_stages(timings: Mapping[str, float]) -> None:
    """The pipeline's own timings (worker.pipeline.Analysis.timings): decode, faces, detector:NAME, ..."""
    for stage, seconds in timings.items():
        STAGE_SECONDS.labels(stage=stage).observe(seconds)


def count_job(result: Any) -> None:
    """Count one finished detect_media task from its return value (tasks.detect.Outcome.to_dict())."""
    if isinstance(result, BaseException):
        JOBS.labels(status="error", code=type(result).__name__).inc()
        return
    if not isinstance(result, dict):
        return
    status = str(result.get("status", ""))
    if result.get("detail") == "not claimed":  # another delivery holds or finished the job
        status = "skipped"
    code = str(result.get("detail", "")) if status == "failed" else ""
    JOBS.labels(status=status, code=code).inc()


def count_detector_failures(statuses: Iterable[Any]) -> None:
    """worker.pipeline.DetectorStatus items: one count per detector that could not be loaded."""
    for status in statuses:
        if not status.available:
            DETECTOR_LOAD_FAILURES.labels(detector=status.name).inc()


def observe_gpu_memory() -> None:
    """Memory torch holds on each CUDA device; nothing (and no torch import) when torch is not loaded."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    for index in range(torch.cuda.device_count()):
        device = visible[index] if index < len(visible) else str(index)  # the host's id, not the pinned 0
        GPU_MEMORY.labels(device=f"cuda:{device}").set(torch.cuda.memory_allocated(index))


def mark_process_dead(pid: int) -> None:
    """A pool process exits: drop its live gauge files (its counters and histograms stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class QueueDepthCollector:
    """`dfw_queue_depth{queue}`: messages waiting in each broker queue, read from Redis (LLEN) per scrape.

    Kombu's Redis transport keeps one list per queue and priority step: `NAME` for priority 0 and
    `NAME\\x06\\x16N` for N = 1..9; the depth is their sum.
    """

    PRIORITY_SEP = "\x06\x16"

    def __init__(self, broker_url: str, queues: Iterable[str]) -> None:
        self.broker_url = broker_url
        self.queues = list(dict.fromkeys(queues))
        self._client: Any = None

    def keys(self, queue: str) -> list[str]:
        return [queue] + [f"{queue}{self.PRIORITY_SEP}{step}" for step in range(1, 10)]

    def depths(self) -> dict[str, int]:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.broker_url, socket_timeout=2, socket_connect_timeout=2)
        pipe = self._client.pipeline(transaction=False)
        for queue in self.queues:
            for key in self.keys(queue):
                pipe.llen(key)
        lengths = pipe.execute()
        return {queue: sum(lengths[i * 10 : (i + 1) * 10]) for i, queue in enumerate(self.queues)}

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("dfw_queue_depth", "Messages waiting in a broker queue", labels=["queue"])
        try:
            depths = self.depths()
        except Exception:  # broker down: no sample rather than a failed scrape; the up metric tells the rest
            depths = {}
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


def start_metrics_server(port: int, address: str, broker_url: str, queues: Iterable[str]) -> None:
    """Serve every pool process's samples (multiprocess collector) and the queue depths on http://ADDR:PORT/."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueDepthCollector(broker_url, queues))
    start_http_server(port, addr=address, registry=registry)
