"""What reviewer tools ask. Each function returns plain dicts, ready for JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, case, func, select
from sqlalchemy.orm import Session

from storage.schema import (
    Explanation,
    FaceScore,
    Frame,
    FrameScore,
    Job,
    Media,
    MediaObject,
    Review,
    Track,
    Verdict,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def job_dict(job: Job, media: Media | None, verdict: Verdict | None) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "pipeline_version": job.pipeline_version,
        "bucket": job.bucket,
        "key": job.key,
        "attempts": job.attempts,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at),
        "timings": job.timings,
        "caller_metadata": job.caller_metadata,
        "media": media_dict(media) if media else None,
        "verdict": verdict_dict(verdict) if verdict else None,
    }


def media_dict(media: Media) -> dict[str, Any]:
    return {
        "sha256": media.sha256,
        "type": media.kind,
        "format": media.format,
        "codec": media.codec,
        "size_bytes": media.size_bytes,
        "width": media.width,
        "height": media.height,
        "duration": media.duration_s,
        "fps": media.fps,
    }


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    return {
        "label": verdict.label,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "policy": verdict.policy,
        "detectors": verdict.detectors,
        "coverage": {
            "frames_requested": verdict.frames_requested,
            "frames": verdict.frames_decoded,
            "faces": verdict.faces,
            "tracks": verdict.tracks,
        },
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def find_jobs(session: Session, ref: str) -> list[dict[str, Any]]:
    """Jobs by job id (digits) or media sha256 (64 hex), newest first, with media and verdict."""
    query = (
        select(Job, Media, Verdict)
        .outerjoin(Media, Media.id == Job.media_id)
        .outerjoin(Verdict, Verdict.job_id == Job.id)
        .order_by(Job.created_at.desc())
    )
    ref = ref.strip().lower()
    if ref.isdigit():
        query = query.where(Job.id == int(ref))
    elif SHA256.match(ref):
        query = query.where(Media.sha256 == ref)
    else:
        raise ValueError(f"{ref!r} is neither a job id nor a sha256")
    jobs = [job_dict(job, media, verdict) for job, media, verdict in session.execute(query).all()]
    return attach_reviews(session, attach_explanations(session, jobs))


def explanation_dict(row: Explanation) -> dict[str, Any]:
    return {
        "explainer": row.explainer,
        "text": row.text,
        "agrees": row.agrees,
        "answer": row.answer,
        "model": row.model,
        "revision": row.revision,
        "latency_s": row.latency_s,
        "created_at": iso(row.created_at),
    }


def attach_explanations(session: Session, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each job gets `explanation`: its newest one (None if there is none), in one query for all jobs."""
    ids = [job["job_id"] for job in jobs]
    newest: dict[int, Explanation] = {}
    if ids:
        rows = session.execute(
            select(Explanation).where(Explanation.job_id.in_(ids)).order_by(Explanation.created_at)
        ).scalars()
        newest = {row.job_id: row for row in rows}
    for job in jobs:
        row = newest.get(job["job_id"])
        job["explanation"] = explanation_dict(row) if row else None
    return jobs


def job_details(session: Session, job_id: int) -> dict[str, Any]:
    """Per-track, per-face and per-frame score rows of one job."""
    tracks = session.execute(select(Track).where(Track.job_id == job_id).order_by(Track.track_id)).scalars()
    faces = session.execute(
        select(FaceScore)
        .where(FaceScore.job_id == job_id)
        .order_by(FaceScore.frame_index, FaceScore.face_index, FaceScore.detector)
    ).scalars()
    frames = session.execute(
        select(FrameScore)
        .where(FrameScore.job_id == job_id)
        .order_by(FrameScore.frame_index, FrameScore.detector)
    ).scalars()
    return {
        "tracks": [
            {
                "track_id": t.track_id,
                "faces": t.faces,
                "first_frame": t.first_frame,
                "last_frame": t.last_frame,
                "score": t.score,
                "detectors": t.detectors,
                "counted": t.counted,
            }
            for t in tracks
        ],
        "faces": [
            {
                "frame_index": f.frame_index,
                "timestamp_s": f.timestamp_s,
                "face_index": f.face_index,
                "track_id": f.track_id,
                "box": [f.box_x, f.box_y, f.box_w, f.box_h],
                "face_confidence": f.face_confidence,
                "detector": f.detector,
                "detector_version": f.detector_version,
                "score": f.score,
            }
            for f in faces
        ],
        "frame_scores": [
            {
                "frame_index": f.frame_index,
                "timestamp_s": f.timestamp_s,
                "detector": f.detector,
                "detector_version": f.detector_version,
                "score": f.score,
            }
            for f in frames
        ],
    }


@dataclass(frozen=True)
class FlaggedFilter:
    """What a reviewer narrows the flagged list to. Labels are effective labels (a reviewer's overrides)."""

    since: datetime | None = None
    until: datetime | None = None
    labels: tuple[str, ...] = ("fake", "uncertain")
    min_score: float | None = None
    max_score: float | None = None
    detector: str | None = None
    reviewed: bool | None = None  # None: either


def flagged(
    session: Session, since: datetime, labels: tuple[str, ...] = ("fake", "uncertain"), limit: int = 100
) -> list[dict[str, Any]]:
    """Finished jobs flagged since a time, most suspicious first; a reviewer's decision overrides the model
    (media a reviewer marked real are left out, media a reviewer confirmed fake are in)."""
    jobs, _ = flagged_page(session, FlaggedFilter(since=since, labels=labels), offset=0, limit=limit)
    return jobs


def flagged_page(
    session: Session, filters: FlaggedFilter, offset: int = 0, limit: int = 50
) -> tuple[list[dict[str, Any]], int]:
    """One page of flagged jobs (most suspicious first, in a stable order) and how many match in all."""
    query = flagged_query(filters)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    page = query.offset(offset).limit(limit)
    jobs = [job_dict(job, media, verdict) for job, media, verdict in session.execute(page).all()]
    return attach_reviews(session, attach_explanations(session, jobs)), total


def flagged_query(filters: FlaggedFilter) -> Select[Job, Media, Verdict]:
    latest = latest_reviews()
    query = (
        select(Job, Media, Verdict)
        .join(Verdict, Verdict.job_id == Job.id)
        .join(Media, Media.id == Job.media_id)
        .outerjoin(latest, latest.c.media_id == Job.media_id)
        .where(Job.status == "done", effective_label_sql(latest).in_(filters.labels))
        .order_by(Verdict.score.desc().nulls_last(), Job.finished_at.desc(), Job.id.desc())
    )
    if filters.since is not None:
        query = query.where(Job.finished_at >= filters.since)
    if filters.until is not None:
        query = query.where(Job.finished_at < filters.until)
    if filters.min_score is not None:
        query = query.where(Verdict.score >= filters.min_score)
    if filters.max_score is not None:
        query = query.where(Verdict.score <= filters.max_score)
    if filters.detector:
        query = query.where(Verdict.detectors.has_key(filters.detector))
    if filters.reviewed is not None:
        reviewed = latest.c.media_id.is_not(None)
        query = query.where(reviewed if filters.reviewed else ~reviewed)
    return query


def latest_reviews() -> Subquery:
    """The newest decision per media, to join on media_id."""
    newest_first = (Review.created_at.desc(), Review.id.desc())
    ranked = select(
        Review.media_id,
        Review.decision,
        func.row_number().over(partition_by=Review.media_id, order_by=newest_first).label("rank"),
    ).subquery("ranked_reviews")
    return select(ranked.c.media_id, ranked.c.decision).where(ranked.c.rank == 1).subquery("latest_review")


def effective_label_sql(latest: Subquery) -> ColumnElement[str]:
    """SQL twin of effective_label(): confirm fake -> fake, mark real -> real, else the model's label."""
    return case(
        (latest.c.decision == "fake", "fake"), (latest.c.decision == "real", "real"), else_=Verdict.label
    )


def effective_label(model_label: str | None, decision: str | None) -> str | None:
    """The label that counts: a reviewer's fake or real wins; `unsure` or no review leaves the model's."""
    if decision in ("fake", "real"):
        return decision
    return model_label


def review_dict(row: Review) -> dict[str, Any]:
    return {
        "review_id": row.id,
        "decision": row.decision,
        "reviewer": row.reviewer,
        "note": row.note,
        "job_id": row.job_id,
        "model_label": row.model_label,
        "model_score": row.model_score,
        "created_at": iso(row.created_at),
    }


def attach_reviews(session: Session, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each job gets `review` (its media's newest decision, or None) and `effective_label`, in one query."""
    ids = [job["job_id"] for job in jobs]
    newest: dict[int, Review] = {}
    if ids:
        rows = session.execute(
            select(Job.id, Review)
            .join(Review, Review.media_id == Job.media_id)
            .where(Job.id.in_(ids))
            .order_by(Review.created_at, Review.id)
        ).all()
        newest = {job_id: review for job_id, review in rows}
    for job in jobs:
        row = newest.get(job["job_id"])
        job["review"] = review_dict(row) if row else None
        model_label = job["verdict"]["label"] if job.get("verdict") else None
        job["effective_label"] = effective_label(model_label, row.decision if row else None)
    return jobs


def media_reviews(session: Session, job_id: int) -> list[dict[str, Any]]:
    """Every decision about the media of a job, newest first (the audit trail)."""
    rows = session.execute(
        select(Review)
        .join(Job, Job.media_id == Review.media_id)
        .where(Job.id == job_id)
        .order_by(Review.created_at.desc(), Review.id.desc())
    ).scalars()
    return [review_dict(row) for row in rows]


def sampled_frames(session: Session, job_id: int) -> list[dict[str, Any]]:
    """The frames a job decoded: index, timestamp, size and face count, in order."""
    rows = session.execute(select(Frame).where(Frame.job_id == job_id).order_by(Frame.frame_index)).scalars()
    return [
        {
            "frame_index": f.frame_index,
            "timestamp_s": f.timestamp_s,
            "width": f.width,
            "height": f.height,
            "faces": f.faces,
        }
        for f in rows
    ]


def object_keys(session: Session, media_id: int) -> list[tuple[str, str]]:
    rows = session.execute(
        select(MediaObject.bucket, MediaObject.key).where(MediaObject.media_id == media_id)
    ).all()
    return [(row.bucket, row.key) for row in rows]


def jobs_to_backfill(
    session: Session, detector: str, version: str, since: datetime | None = None
) -> list[int]:
    """Finished jobs whose scores from `detector` were made by another version (or other weights), or that
    have no score from it at all."""
    current = (
        select(FaceScore.job_id)
        .where(FaceScore.detector == detector, FaceScore.detector_version == version)
        .union(
            select(FrameScore.job_id).where(
                FrameScore.detector == detector, FrameScore.detector_version == version
            )
        )
    )
    query = select(Job.id).where(Job.status == "done", Job.media_id.is_not(None), Job.id.not_in(current))
    if since is not None:
        query = query.where(Job.finished_at >= since)
    return list(session.execute(query.order_by(Job.id)).scalars())
