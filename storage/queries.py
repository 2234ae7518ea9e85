"""What reviewer tools ask. Each function returns plain dicts, ready for JSON."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.schema import Explanation, FaceScore, FrameScore, Job, Media, MediaObject, Track, Verdict

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
    return attach_explanations(session, jobs)


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


def flagged(
    session: Session, since: datetime, labels: tuple[str, ...] = ("fake", "uncertain"), limit: int = 100
) -> list[dict[str, Any]]:
    """Finished jobs with a flagged verdict since a time, most suspicious first."""
    query = (
        select(Job, Media, Verdict)
        .join(Verdict, Verdict.job_id == Job.id)
        .join(Media, Media.id == Job.media_id)
        .where(Job.status == "done", Job.finished_at >= since, Verdict.label.in_(labels))
        .order_by(Verdict.score.desc().nulls_last(), Job.finished_at.desc())
        .limit(limit)
    )
    jobs = [job_dict(job, media, verdict) for job, media, verdict in session.execute(query).all()]
    return attach_explanations(session, jobs)


def object_keys(session: Session, media_id: int) -> list[tuple[str, str]]:
    rows = session.execute(
        select(MediaObject.bucket, MediaObject.key).where(MediaObject.media_id == media_id)
    ).all()
    return [(row.bucket, row.key) for row in rows]
