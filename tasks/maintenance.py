"""Operator work: requeue expired leases (`dfw reap`), retry failed jobs (`dfw retry`), recompute verdicts
from stored scores (`dfw reaggregate`), re-run one changed detector (`dfw backfill`). Every operation is
idempotent and has a dry run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from storage.db import session_factory, transaction
from storage.jobs import Requeued, reap_expired, requeue_failed
from storage.objects import ObjectError
from storage.queries import job_details, jobs_to_backfill
from storage.results import replace_detector_scores, replace_verdict
from storage.schema import FaceScore, Job
from storage.schema import Verdict as VerdictRow
from storage.settings import get_storage_settings
from tasks.app import app
from tasks.explain import decode_again
from tasks.producer import send_detect
from tasks.rows import evidence_inputs, face_score_rows, frame_score_rows, verdict_rows
from tasks.settings import get_service_settings
from worker.aggregate import decide_verdict
from worker.errors import MediaError
from worker.evaluation import resolve_threshold
from worker.pipeline import Pipeline
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


@dataclass
class BackfillReport:
    version: str
    jobs: list[int] = field(default_factory=list)  # re-run, or to re-run in a dry run
    skipped: dict[int, str] = field(default_factory=dict)  # job id -> why (object gone, not decodable)


def backfill(
    detector: str, since: datetime | None, dry_run: bool = False, progress: Progress | None = None
) -> BackfillReport:
    """Re-run only `detector` on finished jobs scored by another version of it (or not at all), then
    re-aggregate them. Faces are not detected again: the stored boxes and tracks are reused. A job whose
    object is gone or no longer decodes is skipped and reported; the others go on."""
    pipeline = backfill_pipeline(detector)
    (target,) = pipeline.detectors
    factory = session_factory(get_storage_settings().database_url)
    with factory() as session:
        job_ids = jobs_to_backfill(session, detector, target.lineage().version, since)
    report = BackfillReport(target.lineage().version)
    if dry_run:
        report.jobs = job_ids
        return report
    for number, job_id in enumerate(job_ids, start=1):
        try:
            backfill_job(factory, pipeline, job_id)
        except (ObjectError, MediaError) as exc:
            if isinstance(exc, ObjectError) and not exc.permanent:
                raise
            logger.warning("job %s: backfill skipped: %s", job_id, exc)
            report.skipped[job_id] = str(exc)
        else:
            reaggregate_job(factory, job_id, dry_run=False)
            report.jobs.append(job_id)
        if progress:
            progress(number, len(job_ids))
    return report


def backfill_pipeline(detector: str) -> Pipeline:
    settings = get_settings()
    pipeline = Pipeline(settings.model_copy(update={"detectors": [detector]}))
    pipeline.load()
    return pipeline


def backfill_job(factory: Any, pipeline: Pipeline, job_id: int) -> None:
    (detector,) = pipeline.detectors
    with factory() as session:
        job = session.get_one(Job, job_id)
        details = job_details(session, job_id)
        sampling = session.execute(
            select(FaceScore.sampling).where(FaceScore.job_id == job_id).limit(1)
        ).scalar() or {"frames_requested": job.lineage.get("sampling", {}).get("frames_per_video")}
    faces, _, _ = evidence_inputs(details)
    frames = decode_again(job, pipeline.settings)
    lineage = {detector.name: detector.lineage()}
    if detector.looks_at == "face":
        face_rows = face_score_rows(faces, pipeline.score_faces(detector, frames, faces), lineage, sampling)
        frame_rows: list[dict[str, Any]] = []
    else:
        timestamps = {f.index: f.timestamp_s for f in frames}
        frame_rows = frame_score_rows(pipeline.score_frames(detector, frames), timestamps, lineage, sampling)
        face_rows = []
    with transaction(factory) as session:
        replace_detector_scores(
            session, job_id, detector.name, face_scores=face_rows, frame_scores=frame_rows
        )
        job = session.get_one(Job, job_id)
        entry = {
            "version": lineage[detector.name].version,
            "weights": lineage[detector.name].weights,
            "config": lineage[detector.name].config,
        }
        job.lineage = {**job.lineage, "detectors": {**job.lineage.get("detectors", {}), detector.name: entry}}
    logger.info("job %s: backfilled %s (%s)", job_id, detector.name, lineage[detector.name].version)


@app.task(name="dfw.reap", acks_late=True)
def reap_task() -> dict[str, int]:
    """Periodic reaper (maintenance queue; schedule it with `dfw worker --beat` or any cron)."""
    requeued, sent = reap()
    return {"requeued": len(requeued), "sent": sent}
