"""The producer side: what upload services call (or `dfw enqueue`)."""

from __future__ import annotations

from typing import Any

from tasks.app import app
from tasks.settings import get_service_settings

DETECT_TASK = "dfw.detect_media"


def send_detect(
    bucket: str,
    key: str,
    priority: int = 5,
    metadata: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> str:
    """Enqueue detect_media for one object; returns the Celery task id. Raises if the broker refuses.

    `callback_url`: POST the final verdict there, signed (see tasks/webhooks.py); sent only when given, so
    that workers older than the `callback_url` argument still accept the message."""
    kwargs: dict[str, Any] = {"bucket": bucket, "key": key, "priority": priority, "metadata": metadata or {}}
    if callback_url:
        kwargs["callback_url"] = callback_url
    result = app.send_task(
        DETECT_TASK,
        kwargs=kwargs,
        queue=get_service_settings().detect_queue,
        priority=priority,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0},
    )
    return str(result.id)
