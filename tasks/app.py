"""The Celery app: broker, queues, routing, reliability settings, and model loading at process start."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup, task_postrun, worker_process_init, worker_process_shutdown
from kombu import Queue

from tasks import metrics
from tasks.settings import get_service_settings

logger = logging.getLogger(__name__)

MAINTENANCE_QUEUE = "maintenance"
CONSUMED: set[str] = set()  # queues this worker consumes; set in the parent, inherited by forked children


def create_app() -> Celery:
    settings = get_service_settings()
    app = Celery(
        "dfw",
        broker=settings.broker_url,
        include=["tasks.detect", "tasks.explain", "tasks.maintenance", "tasks.webhooks"],
    )
    app.conf.update(
        task_queues=[
            Queue(name)
            for name in (
                settings.detect_queue,
                settings.explain_queue,
                settings.webhooks_queue,
                MAINTENANCE_QUEUE,
            )
        ],
        task_default_queue=settings.detect_queue,
        task_routes={
            "dfw.detect_media": {"queue": settings.detect_queue},
            "dfw.explain_media": {"queue": settings.explain_queue},
            "dfw.deliver_webhook": {"queue": settings.webhooks_queue},
            "dfw.reap": {"queue": MAINTENANCE_QUEUE},
        },
        beat_schedule={"reap": {"task": "dfw.reap", "schedule": settings.reap_interval_s}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=False,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_time_limit=settings.time_limit_s,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=None,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
        },
        task_default_priority=5,
    )
    return app


app = create_app()


@celeryd_after_setup.connect
def remember_queues(sender: Any, instance: Any, **_: Any) -> None:
    CONSUMED.update(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)


@worker_process_init.connect
def load_models_at_start(**_: Any) -> None:
    """Load what this worker's queues need once per process, before the first task (failures are logged)."""
    settings = get_service_settings()
    if not CONSUMED or settings.detect_queue in CONSUMED:
        from tasks.detect import warm_pipeline

        warm_pipeline()
    if settings.explain_queue in CONSUMED:
        from tasks.explain import warm_explainer

        warm_explainer()


@task_postrun.connect
def count_finished_task(sender: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    """Metrics of a detect_media task that reached its final state (retries are not final)."""
    if getattr(sender, "name", None) != "dfw.detect_media" or state == "RETRY":
        return
    metrics.count_job(retval)
    metrics.observe_gpu_memory()


@worker_process_shutdown.connect
def forget_process_metrics(pid: int | None = None, **_: Any) -> None:
    metrics.mark_process_dead(pid or os.getpid())
