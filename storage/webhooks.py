"""Webhook delivery attempts: one row per POST of a job's final verdict (unique per job and attempt)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.schema import Explanation, Job, Media, Verdict, WebhookDelivery


@dataclass(frozen=True)
class DeliveryState:
    attempts: int  # POSTs recorded so far
    delivered: bool  # a 2xx answer was recorded
    rejected: bool  # a final (non-retryable) answer was recorded: 3xx or 4xx other than 429


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def is_retryable(status_code: int | None) -> bool:
    """No answer (connection error, timeout), 429 or 5xx: worth another attempt."""
    return status_code is None or status_code == 429 or status_code >= 500


def delivery_state(session: Session, job_id: int) -> DeliveryState:
    codes = [
        row[0]
        for row in session.execute(
            select(WebhookDelivery.status_code).where(WebhookDelivery.job_id == job_id)
        ).all()
    ]
    delivered = any(is_success(code) for code in codes)
    rejected = any(not is_success(code) and not is_retryable(code) for code in codes)
    return DeliveryState(len(codes), delivered, rejected)


def record_delivery(
    session: Session,
    job_id: int,
    *,
    url: str,
    status_code: int | None,
    error: str | None,
    duration_s: float,
) -> int:
    """Store one attempt under the next free attempt number for the job; returns that number."""
    for _ in range(5):  # a concurrent duplicate may take the same number: take the next one
        attempt = (
            session.execute(
                select(func.coalesce(func.max(WebhookDelivery.attempt), 0)).where(
                    WebhookDelivery.job_id == job_id
                )
            ).scalar_one()
            + 1
        )
        stmt = (
            insert(WebhookDelivery)
            .values(
                job_id=job_id,
                url=url,
                attempt=attempt,
                status_code=status_code,
                error=error[:2000] if error else None,
                duration_s=duration_s,
            )
            .on_conflict_do_nothing(index_elements=[WebhookDelivery.job_id, WebhookDelivery.attempt])
            .returning(WebhookDelivery.attempt)
        )
        if session.execute(stmt).scalar_one_or_none() is not None:
            return int(attempt)
    raise RuntimeError(f"job {job_id}: could not record a webhook delivery attempt")


def deliveries(session: Session, job_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.attempt)
    ).scalars()
    return [
        {
            "attempt": row.attempt,
            "url": row.url,
            "status_code": row.status_code,
            "error": row.error,
            "duration_s": row.duration_s,
            "created_at": row.created_at.isoformat() if row.created_at else None,
        }
        for row in rows
    ]


def final_verdict(session: Session, job_id: int) -> dict[str, Any] | None:
    """What a webhook reports about a finished (done or failed) job; None while it is not final."""
    row = session.execute(
        select(Job, Media, Verdict)
        .outerjoin(Media, Media.id == Job.media_id)
        .outerjoin(Verdict, Verdict.job_id == Job.id)
        .where(Job.id == job_id, Job.status.in_(("done", "failed")))
    ).one_or_none()
    if row is None:
        return None
    job, media, verdict = row[0], row[1], row[2]
    explanation = (
        session.execute(
            select(Explanation).where(Explanation.job_id == job_id).order_by(Explanation.created_at.desc())
        )
        .scalars()
        .first()
    )
    return {
        "job_id": job.id,
        "status": job.status,
        "pipeline_version": job.pipeline_version,
        "bucket": job.bucket,
        "key": job.key,
        "media_sha256": media.sha256 if media else None,
        "caller_metadata": dict(job.caller_metadata or {}),
        "label": verdict.label if verdict else None,
        "score": verdict.score if verdict else None,
        "threshold": verdict.threshold if verdict else None,
        "coverage": {
            "frames_requested": verdict.frames_requested,
            "frames": verdict.frames_decoded,
            "faces": verdict.faces,
            "tracks": verdict.tracks,
        }
        if verdict
        else None,
        "explanation": {"explainer": explanation.explainer, "text": explanation.text}
        if explanation
        else None,
        "error_code": job.error_code if job.status == "failed" else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
