"""Writes of media, objects and analysis results. A rerun replaces a job's rows; it never duplicates them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.schema import Explanation, FaceScore, Frame, FrameScore, Media, MediaObject, Track, Verdict

MEDIA_FIELDS = (
    "kind",
    "format",
    "codec",
    "size_bytes",
    "width",
    "height",
    "duration_s",
    "fps",
    "frame_count",
)


def upsert_media(session: Session, sha256: str, info: dict[str, Any]) -> int:
    values = {name: info.get(name) for name in MEDIA_FIELDS}
    stmt = (
        insert(Media)
        .values(sha256=sha256, **values)
        .on_conflict_do_update(index_elements=[Media.sha256], set_=values)
        .returning(Media.id)
    )
    media_id: int = session.execute(stmt).scalar_one()
    return media_id


def lookup_object(session: Session, bucket: str, key: str, etag: str | None, size: int) -> int | None:
    """The media id of an object already seen with the same ETag and size, if any."""
    if not etag:
        return None
    return session.execute(
        select(MediaObject.media_id).where(
            MediaObject.bucket == bucket,
            MediaObject.key == key,
            MediaObject.etag == etag,
            MediaObject.size_bytes == size,
        )
    ).scalar_one_or_none()


def upsert_object(
    session: Session,
    *,
    bucket: str,
    key: str,
    etag: str | None,
    size: int,
    media_id: int,
    caller_metadata: dict[str, Any],
) -> None:
    values = {"etag": etag, "size_bytes": size, "media_id": media_id, "caller_metadata": caller_metadata}
    stmt = insert(MediaObject).values(bucket=bucket, key=key, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[MediaObject.bucket, MediaObject.key], set_={**values, "last_seen": func.now()}
    )
    session.execute(stmt)


def replace_results(
    session: Session,
    job_id: int,
    *,
    frames: Sequence[dict[str, Any]],
    face_scores: Sequence[dict[str, Any]],
    tracks: Sequence[dict[str, Any]],
    verdict: dict[str, Any],
    frame_scores: Sequence[dict[str, Any]] = (),
) -> None:
    """Store one job's complete results in the caller's transaction, replacing any earlier attempt's."""
    for table in (FaceScore, FrameScore, Track, Frame):
        session.execute(delete(table).where(table.job_id == job_id))
    if frames:
        session.execute(insert(Frame), [{**row, "job_id": job_id} for row in frames])
    if face_scores:
        session.execute(insert(FaceScore), [{**row, "job_id": job_id} for row in face_scores])
    if frame_scores:
        session.execute(insert(FrameScore), [{**row, "job_id": job_id} for row in frame_scores])
    if tracks:
        session.execute(insert(Track), [{**row, "job_id": job_id} for row in tracks])
    stmt = insert(Verdict).values(job_id=job_id, **verdict)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Verdict.job_id], set_={**verdict, "created_at": func.now()}
    )
    session.execute(stmt)


def upsert_explanation(session: Session, job_id: int, explanation: dict[str, Any]) -> None:
    """One explanation per job and explainer; a rerun replaces it."""
    stmt = insert(Explanation).values(job_id=job_id, **explanation)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Explanation.job_id, Explanation.explainer],
        set_={**explanation, "created_at": func.now()},
    )
    session.execute(stmt)


def replace_verdict(
    session: Session, job_id: int, *, tracks: Sequence[dict[str, Any]], verdict: dict[str, Any]
) -> None:
    """A recomputed verdict and its track rows (scores and frames are left as they are)."""
    session.execute(delete(Track).where(Track.job_id == job_id))
    if tracks:
        session.execute(insert(Track), [{**row, "job_id": job_id} for row in tracks])
    stmt = insert(Verdict).values(job_id=job_id, **verdict)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Verdict.job_id], set_={**verdict, "created_at": func.now()}
        )
    )


def replace_detector_scores(
    session: Session,
    job_id: int,
    detector: str,
    *,
    face_scores: Sequence[dict[str, Any]],
    frame_scores: Sequence[dict[str, Any]],
) -> None:
    """One detector's rows of a job, replaced (a backfill); other detectors' rows are left alone."""
    for table in (FaceScore, FrameScore):
        session.execute(delete(table).where(table.job_id == job_id, table.detector == detector))
    if face_scores:
        session.execute(insert(FaceScore), [{**row, "job_id": job_id} for row in face_scores])
    if frame_scores:
        session.execute(insert(FrameScore), [{**row, "job_id": job_id} for row in frame_scores])
