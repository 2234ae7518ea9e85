"""Operator work: requeue expired leases (`dfw reap`), retry failed jobs (`dfw retry`), recompute verdicts
from stored scores (`dfw reaggregate`). Every operation is idempotent and has a dry run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from storage.db import session_factory, transaction
from storage.jobs import Requeued, reap_expired, requeue_failed
from storage.queries import job_details
from storage.results import replace_verdict
from storage.schema import Job
from storage.schema import Verdict as VerdictRow
from storage.settings import get_storage_settings
from tasks.app import app
from tasks.producer import send_detect
from tasks.rows import evidence_inputs, verdict_rows
from tasks.settings import get_service_settings
from worker.aggregate import decide_verdict
from worker.evaluation import resolve_threshold
from worker.settings import get_settings

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def resend(requeued: list[Requeued], progress: Progress | None = None) -> int:
    """Send detect_media again for requeued jobs; returns how many were sent (the rest stay queued with a
    deadline, so the next reap sends them)."""
    sent = 0
    for number, job in enumerate(requeued, start=1):
        try:
            send_detect(job.bucket, job.key, priority=job.priority, metadata=job.caller_metadata)
            sent += 1
        except Exception:
            logger.exception(
                "job %s: could not re-send; the reaper will try again at its deadline", job.job_id
            )
        if progress:
            progress(number, len(requeued))
    return sent


def reap(dry_run: bool = False, progress: Progress | None = None) -> tuple[list[Requeued], int]:
    factory = session_factory(get_storage_settings().database_url)
    with transaction(factory) as session:
        requeued = reap_expired(session, get_service_settings().lease_s, dry_run=dry_run)
    for job in requeued:
        logger.info("job %s: lease expired, %s", job.job_id, "would requeue" if dry_run else "requeued")
    return requeued, 0 if dry_run else resend(requeued, progress)


def retry_failed(
    since: datetime | None, codes: tuple[str, ...], dry_run: bool = False, progress: Progress | None = None
) -> tuple[list[Requeued], int]:
    factory = session_factory(get_storage_settings().database_url)
    with transaction(factory) as session:
        requeued = requeue_failed(
            session, since=since, codes=codes, lease_s=get_service_settings().lease_s, dry_run=dry_run
        )
    return requeued, 0 if dry_run else resend(requeued, progress)


def reaggregate(
    since: datetime | None, dry_run: bool = False, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Recompute every finished job's verdict from its stored scores with the current aggregation settings;
    no media is fetched. Returns the jobs whose label or score changed."""
    factory = session_factory(get_storage_settings().database_url)
    query = select(Job.id).join(VerdictRow, VerdictRow.job_id == Job.id).where(Job.status == "done")
    if since is not None:
        query = query.where(Job.finished_at >= since)
    with factory() as session:
        job_ids = list(session.execute(query.order_by(Job.id)).scalars())
    changed = []
    for number, job_id in enumerate(job_ids, start=1):
        change = reaggregate_job(factory, job_id, dry_run)
        if change:
            changed.append(change)
        if progress:
            progress(number, len(job_ids))
    return changed


def reaggregate_job(factory: Any, job_id: int, dry_run: bool) -> dict[str, Any] | None:
    settings = get_settings()
    with transaction(factory) as session:
        old = session.get_one(VerdictRow, job_id, with_for_update=True)
        details = job_details(session, job_id)
        _, face_scores, frame_scores = evidence_inputs(details)
        detectors = sorted({s.detector for s in face_scores} | {s.detector for s in frame_scores})
        config = settings.aggregate.model_copy(
            update={"threshold": resolve_threshold(settings.aggregate, settings.model_dir, detectors)}
        )
        verdict = decide_verdict(face_scores, config, old.frames_requested, old.frames_decoded, frame_scores)
        if (verdict.label, verdict.score, verdict.threshold, verdict.policy) == (
            old.label,
            old.score,
            old.threshold,
            old.policy,
        ):
            return None
        change = {"job_id": job_id, "label": [old.label, verdict.label], "score": [old.score, verdict.score]}
        if not dry_run:
            replace_verdict(session, job_id, **verdict_rows(verdict))
    return change


@app.task(name="dfw.reap", acks_late=True)
def reap_task() -> dict[str, int]:
    """Periodic reaper (maintenance queue; schedule it with `dfw worker --beat` or any cron)."""
    requeued, sent = reap()
    return {"requeued": len(requeued), "sent": sent}
