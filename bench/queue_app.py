"""A Celery app for bench/queue_overhead.py: the detect task's queue and database path with no analysis.

The task claims the job row in Postgres (storage.jobs.claim_job), notes when it started, and finishes it
(storage.jobs.finish_job); nothing is downloaded or analysed. Configured like tasks.app (acks late,
prefetch 1, JSON); broker, queue and database come from BENCH_BROKER / BENCH_QUEUE / BENCH_DATABASE.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celery import Celery
from kombu import Queue

from storage.db import session_factory, transaction
from storage.jobs import claim_job, finish_job

QUEUE = os.environ.get("BENCH_QUEUE", "bench-noop")
app = Celery("bench_queue", broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_queues=[Queue(QUEUE)],
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
_factory: Any = None


@app.task(name="bench.noop_detect")
def noop_detect(job_id: int, sent_at: float) -> None:
    started = time.time()
    global _factory
    if _factory is None:
        _factory = session_factory(os.environ["BENCH_DATABASE"])
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with transaction(_factory) as session:
        claim = claim_job(session, job_id, worker, 900.0, 3)
    if claim.claimed:
        with transaction(_factory) as session:
            finish_job(session, job_id, {"latency_s": started - sent_at, "started": started}, "noop")
