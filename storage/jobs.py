"""Job rows: create-or-find, claim with a lease, finish, fail. Every call is idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.schema import Job


@dataclass(frozen=True)
class JobRef:
    id: int
    status: str
    created: bool


@dataclass(frozen=True)
class Claim:
    claimed: bool
    status: str  # the row's status after the call
    attempts: int


def find_or_create_job(
    session: Session,
    *,
    media_id: int,
    bucket: str,
    key: str,
    pipeline_version: str,
    priority: int = 0,
    caller_metadata: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    lease_s: float = 900.0,
) -> JobRef:
    """The job for this content and pipeline version; created (status `queued`) only if there is none.

    A new row gets a deadline (`lease_expires_at`) too: if nobody claims it by then, the reaper requeues it.
    """
    stmt = (
        insert(Job)
        .values(
            media_id=media_id,
            bucket=bucket,
            key=key,
            pipeline_version=pipeline_version,
            priority=priority,
            caller_metadata=caller_metadata or {},
            lineage=lineage or {},
            lease_expires_at=func.now() + timedelta(seconds=lease_s),
        )
        .on_conflict_do_nothing(index_elements=[Job.media_id, Job.pipeline_version])
        .returning(Job.id)
    )
    new_id = session.execute(stmt).scalar_one_or_none()
    if new_id is not None:
        return JobRef(new_id, "queued", True)
    row = session.execute(
        select(Job.id, Job.status).where(Job.media_id == media_id, Job.pipeline_version == pipeline_version)
    ).one()
    return JobRef(row.id, row.status, False)


def claim_job(session: Session, job_id: int, worker: str, lease_s: float, max_attempts: int) -> Claim:
    """Take the job if it is queued, or running under an expired lease (or under this same worker's lease:
    a retry after a database error), and attempts remain."""
    lease = func.now() + timedelta(seconds=lease_s)
    running_but_free = (Job.lease_expires_at < func.now()) | (Job.worker == worker)
    stmt = (
        update(Job)
        .where(
            Job.id == job_id,
            Job.attempts < max_attempts,
            (Job.status == "queued") | ((Job.status == "running") & running_but_free),
        )
        .values(
            status="running",
            attempts=Job.attempts + 1,
            worker=worker,
            lease_expires_at=lease,
            started_at=func.now(),
            error_code=None,
            error_message=None,
        )
        .returning(Job.attempts)
    )
    attempts = session.execute(stmt).scalar_one_or_none()
    if attempts is not None:
        return Claim(True, "running", attempts)
    row = session.execute(select(Job.status, Job.attempts).where(Job.id == job_id)).one()
    return Claim(False, row.status, row.attempts)


def finish_job(session: Session, job_id: int, timings: dict[str, float], sampling_method: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            status="done",
            timings=timings,
            sampling_method=sampling_method,
            finished_at=func.now(),
            lease_expires_at=None,
            error_code=None,
            error_message=None,
        )
    )


def fail_job(session: Session, job_id: int, code: str, message: str) -> None:
    """A permanent failure: the job will not be retried unless an operator requeues it."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            status="failed",
            error_code=code,
            error_message=message[:2000],
            finished_at=func.now(),
            lease_expires_at=None,
        )
    )


def release_job(session: Session, job_id: int, code: str, message: str, lease_s: float = 900.0) -> None:
    """A transient failure: back to `queued` (the task is retried; if that retry is lost, the reaper
    requeues the job at its deadline), the reason kept for operators."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .values(
            status="queued",
            error_code=code,
            error_message=message[:2000],
            lease_expires_at=func.now() + timedelta(seconds=lease_s),
        )
    )


def record_object_failure(
    session: Session,
    *,
    bucket: str,
    key: str,
    pipeline_version: str,
    code: str,
    message: str,
    caller_metadata: dict[str, Any] | None = None,
) -> int:
    """A request that failed before its content was known (missing object, too large...).

    One row per object and pipeline version; a repeat updates it.
    """
    values = {
        "media_id": None,
        "bucket": bucket,
        "key": key,
        "pipeline_version": pipeline_version,
        "status": "failed",
        "attempts": 1,
        "error_code": code,
        "error_message": message[:2000],
        "caller_metadata": caller_metadata or {},
        "finished_at": func.now(),
    }
    stmt = (
        insert(Job)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[Job.bucket, Job.key, Job.pipeline_version],
            index_where=Job.media_id.is_(None),
            set_={
                "status": "failed",
                "attempts": Job.attempts + 1,
                "error_code": code,
                "error_message": message[:2000],
                "finished_at": func.now(),
            },
        )
        .returning(Job.id)
    )
    job_id: int = session.execute(stmt).scalar_one()
    return job_id


@dataclass(frozen=True)
class Requeued:
    job_id: int
    bucket: str
    key: str
    priority: int
    caller_metadata: dict[str, Any]


def reap_expired(
    session: Session, lease_s: float, limit: int = 1000, dry_run: bool = False
) -> list[Requeued]:
    """Jobs queued or running past their deadline (a worker died, a message was lost): back to `queued`
    with a new deadline. The caller re-sends their tasks; a duplicate delivery is a no-op (claim)."""
    expired = (Job.status.in_(("queued", "running"))) & (Job.lease_expires_at < func.now())
    if dry_run:
        rows = session.execute(
            select(Job.id, Job.bucket, Job.key, Job.priority, Job.caller_metadata).where(expired).limit(limit)
        ).all()
    else:
        ids = select(Job.id).where(expired).limit(limit).with_for_update(skip_locked=True).scalar_subquery()
        rows = session.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(status="queued", worker=None, lease_expires_at=func.now() + timedelta(seconds=lease_s))
            .returning(Job.id, Job.bucket, Job.key, Job.priority, Job.caller_metadata)
        ).all()
    return [Requeued(r[0], r[1], r[2], r[3], r[4] or {}) for r in rows]


PERMANENT_MEDIA_CODES = (
    "empty", "not_media", "unsupported", "corrupt", "too_large", "too_many_pixels", "too_long", "no_frames",
)  # fmt: skip


def requeue_failed(
    session: Session,
    *,
    since: Any = None,
    codes: tuple[str, ...] = (),
    lease_s: float = 900.0,
    limit: int = 10000,
    dry_run: bool = False,
) -> list[Requeued]:
    """Failed jobs that can succeed now, back to `queued` with attempts reset; the caller re-sends them.

    Without `codes`, media that cannot be analysed (not media, corrupt, over a cap...) is left alone; naming
    a code retries exactly those (e.g. `too_long` after raising the cap)."""
    condition = Job.status == "failed"
    if codes:
        condition &= Job.error_code.in_(codes)
    else:
        condition &= Job.error_code.is_(None) | Job.error_code.not_in(PERMANENT_MEDIA_CODES)
    if since is not None:
        condition &= Job.finished_at >= since
    columns = (Job.id, Job.bucket, Job.key, Job.priority, Job.caller_metadata)
    if dry_run:
        rows = session.execute(select(*columns).where(condition).order_by(Job.id).limit(limit)).all()
    else:
        ids = select(Job.id).where(condition).order_by(Job.id).limit(limit).scalar_subquery()
        rows = session.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(
                status="queued",
                attempts=0,
                worker=None,
                finished_at=None,
                lease_expires_at=func.now() + timedelta(seconds=lease_s),
            )
            .returning(*columns)
        ).all()
    return [Requeued(r[0], r[1], r[2], r[3], r[4] or {}) for r in rows]


def resolve_object_failures(session: Session, bucket: str, key: str, pipeline_version: str) -> None:
    """The object was fetched after all: its earlier failure row (no media) is no longer the answer."""
    session.execute(
        delete(Job).where(
            Job.media_id.is_(None),
            Job.bucket == bucket,
            Job.key == key,
            Job.pipeline_version == pipeline_version,
        )
    )
