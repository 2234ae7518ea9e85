"""`dfw.detect_media`: fetch an object, analyse it once per content and pipeline version, store results.

Order of work, so that nothing is lost or duplicated under at-least-once delivery:
1. HEAD the object; an object seen before with the same ETag and a finished job is a no-op;
2. stream it to a temporary file (size-capped, hashed), probe it;
3. one transaction: media row (by sha256), object row, job row (by sha256 + pipeline version); commit;
4. claim the job under a lease (a done job, or one another worker holds, is left alone);
5. analyse; one transaction writes every result row and marks the job done.
Permanent errors mark the job failed with a stable code; transient ones retry with capped, jittered backoff.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from storage.db import session_factory, transaction
from storage.jobs import (
    claim_job,
    fail_job,
    find_or_create_job,
    finish_job,
    record_object_failure,
    release_job,
    resolve_object_failures,
)
from storage.objects import ObjectError, ObjectStore, S3Objects, s3_client
from storage.results import lookup_object, replace_results, upsert_media, upsert_object
from storage.schema import Job
from storage.settings import get_storage_settings
from tasks.app import app
from tasks.metrics import count_detector_failures, observe_stages, time_stage
from tasks.policy import should_explain
from tasks.rows import analysis_rows
from tasks.settings import get_service_settings
from worker.errors import ErrorCode, MediaError, ModelUnavailable
from worker.media import probe_media
from worker.pipeline import Pipeline
from worker.settings import get_settings

logger = logging.getLogger(__name__)

_state_lock = threading.Lock()
_pipeline: Pipeline | None = None
_objects: ObjectStore | None = None


class TransientError(Exception):
    """Worth retrying: the object store, database or broker had a problem (or an unexpected error)."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


@dataclass(frozen=True)
class Outcome:
    job_id: int | None
    status: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "detail": self.detail}


def get_pipeline() -> Pipeline:
    global _pipeline
    with _state_lock:
        if _pipeline is None:
            _pipeline = Pipeline(get_settings())
        pipeline = _pipeline
    pipeline.load()
    return pipeline


def warm_pipeline() -> None:
    try:
        pipeline = get_pipeline()
    except ModelUnavailable as exc:
        logger.error("pipeline unavailable at worker start: %s", exc)
        return
    finally:
        count_detector_failures(_pipeline.statuses if _pipeline is not None else [])
    logger.info(
        "pipeline %s loaded on %s: %s",
        pipeline.version,
        pipeline.device,
        ", ".join(d.name for d in pipeline.detectors),
    )


def current_version() -> str:
    """The loaded pipeline's version, or `unavailable` when no pipeline could be loaded."""
    return _pipeline.version if _pipeline is not None and _pipeline.detectors else "unavailable"


def get_objects() -> ObjectStore:
    global _objects
    if _objects is None:
        _objects = S3Objects(s3_client(get_storage_settings()))
    return _objects


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_s(retries: int) -> float:
    settings = get_service_settings()
    cap = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**retries)
    return random.uniform(cap / 2, cap)


@app.task(name="dfw.detect_media", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def detect_media(
    self: Any,
    bucket: str,
    key: str,
    priority: int = 5,
    metadata: dict[str, Any] | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """Analyse s3://bucket/key. Arguments are ids and keys only; results go to Postgres."""
    if callback_url:  # kept in the caller metadata under a reserved key; delivered by tasks/webhooks.py
        from tasks.webhooks import with_callback

        metadata = with_callback(metadata, callback_url)
    settings = get_service_settings()
    try:
        outcome = process_object(bucket, key, priority, metadata or {})
    except SoftTimeLimitExceeded:  # while fetching or probing (analysis has its own handler in run_job)
        logger.error("object s3://%s/%s: soft time limit reached before analysis", bucket, key)
        message = "fetching the object exceeded the task's soft time limit"
        return record_failure(bucket, key, ErrorCode.TIMEOUT.value, message, metadata or {}).to_dict()
    except TransientError as exc:
        if self.request.retries >= settings.transient_retries:
            logger.error(
                "object s3://%s/%s: giving up after %s retries: %s", bucket, key, self.request.retries, exc
            )
            try:
                return give_up(bucket, key, exc, metadata or {}).to_dict()
            except OperationalError:
                logger.error("object s3://%s/%s: database still down; retrying again", bucket, key)
        delay = backoff_s(self.request.retries)
        logger.warning("object s3://%s/%s: transient error, retry in %.1fs: %s", bucket, key, delay, exc)
        raise self.retry(exc=exc, countdown=delay) from exc
    return outcome.to_dict()


def process_object(bucket: str, key: str, priority: int, metadata: dict[str, Any]) -> Outcome:
    try:
        pipeline = get_pipeline()
    except ModelUnavailable as exc:
        return record_failure(bucket, key, ErrorCode.MODEL_UNAVAILABLE.value, str(exc), metadata)
    factory = session_factory(get_storage_settings().database_url)
    objects = get_objects()
    try:
        meta = objects.head(bucket, key)
        with transaction(factory) as session:
            known = lookup_object(session, bucket, key, meta.etag, meta.size)
            done = known is not None and job_status(session, known, pipeline.version) == "done"
        if done:
            logger.info("object s3://%s/%s: already analysed by pipeline %s", bucket, key, pipeline.version)
            return Outcome(None, "duplicate", "same object and pipeline version already done")
        return fetch_and_analyse(objects, factory, pipeline, bucket, key, priority, metadata)
    except ObjectError as exc:
        if exc.permanent:
            return record_failure(bucket, key, exc.code, exc.message, metadata, pipeline.version)
        raise TransientError(str(exc)) from exc
    except OperationalError as exc:
        raise TransientError(f"database: {exc.orig or exc}") from exc


def job_status(session: Any, media_id: int, pipeline_version: str) -> str | None:
    job = session.query(Job).filter_by(media_id=media_id, pipeline_version=pipeline_version).one_or_none()
    return job.status if job else None


def fetch_and_analyse(
    objects: ObjectStore,
    factory: Any,
    pipeline: Pipeline,
    bucket: str,
    key: str,
    priority: int,
    metadata: dict[str, Any],
) -> Outcome:
    limits = pipeline.settings.limits
    with time_stage("download"):
        fetched = objects.fetch(bucket, key, get_service_settings().tmp_dir, limits.max_bytes)
    try:
        try:
            with time_stage("probe"):
                info = probe_media(fetched.path, limits)
        except MediaError as exc:
            return record_failure(bucket, key, exc.code.value, exc.message, metadata, pipeline.version)
        with transaction(factory) as session:
            resolve_object_failures(session, bucket, key, pipeline.version)
            media_id = upsert_media(session, fetched.sha256, info.to_dict())
            upsert_object(
                session,
                bucket=bucket,
                key=key,
                etag=fetched.etag,
                size=fetched.size,
                media_id=media_id,
                caller_metadata=metadata,
            )
            job = find_or_create_job(
                session,
                media_id=media_id,
                bucket=bucket,
                key=key,
                pipeline_version=pipeline.version,
                priority=priority,
                caller_metadata=metadata,
                lineage=pipeline.lineage(),
                lease_s=get_service_settings().lease_s,
            )
        return run_job(factory, pipeline, job.id, fetched.path, info)
    finally:
        fetched.path.unlink(missing_ok=True)


def run_job(factory: Any, pipeline: Pipeline, job_id: int, path: Path, info: Any) -> Outcome:
    settings = get_service_settings()
    with transaction(factory) as session:
        claim = claim_job(session, job_id, worker_name(), settings.lease_s, settings.max_attempts)
    if not claim.claimed:
        logger.info("job %s: not claimed (status %s, %s attempts)", job_id, claim.status, claim.attempts)
        if claim.status in ("queued", "running") and claim.attempts >= settings.max_attempts:
            with transaction(factory) as session:
                fail_job(session, job_id, "attempts_exhausted", f"gave up after {claim.attempts} attempts")
            return Outcome(job_id, "failed", "attempts_exhausted")
        return Outcome(job_id, claim.status, "not claimed")
    logger.info("job %s: claimed (attempt %s)", job_id, claim.attempts)
    try:
        analysis = pipeline.analyze(path, info)
        observe_stages(analysis.timings)
    except MediaError as exc:
        logger.info("job %s: failed permanently: %s", job_id, exc)
        with transaction(factory) as session:
            fail_job(session, job_id, exc.code.value, exc.message)
        return Outcome(job_id, "failed", exc.code.value)
    except SoftTimeLimitExceeded:
        logger.error("job %s: soft time limit reached", job_id)
        with transaction(factory) as session:
            fail_job(session, job_id, ErrorCode.TIMEOUT.value, "analysis exceeded the task's soft time limit")
        return Outcome(job_id, "failed", ErrorCode.TIMEOUT.value)
    except Exception as exc:
        logger.exception("job %s: unexpected error", job_id)
        release_after_error(factory, job_id, exc)
        raise TransientError(f"job {job_id}: {type(exc).__name__}: {exc}", job_id) from exc
    rows = analysis_rows(analysis, pipeline)
    with time_stage("persist"), transaction(factory) as session:
        replace_results(session, job_id, **rows)
        finish_job(session, job_id, analysis.timings, analysis.method)
    logger.info("job %s: done: %s (score %s)", job_id, analysis.verdict.label, analysis.verdict.score)
    if should_explain(analysis.verdict.label, pipeline.settings.explain.policy):
        from tasks.explain import enqueue_explain

        enqueue_explain(job_id)
    return Outcome(job_id, "done", analysis.verdict.label)


def release_after_error(factory: Any, job_id: int, exc: Exception) -> None:
    try:
        with transaction(factory) as session:
            release_job(
                session,
                job_id,
                ErrorCode.INTERNAL.value,
                f"{type(exc).__name__}: {exc}",
                get_service_settings().lease_s,
            )
    except SQLAlchemyError:
        logger.exception("job %s: could not release the job row; the lease will expire", job_id)


def give_up(bucket: str, key: str, exc: TransientError, metadata: dict[str, Any]) -> Outcome:
    """The last attempt failed transiently: fail the job row if there is one, else the object's row."""
    if exc.job_id is None:
        return record_failure(bucket, key, "transient_exhausted", str(exc), metadata)
    factory = session_factory(get_storage_settings().database_url)
    with transaction(factory) as session:
        fail_job(session, exc.job_id, "transient_exhausted", str(exc))
    return Outcome(exc.job_id, "failed", "transient_exhausted")


def record_failure(
    bucket: str,
    key: str,
    code: str,
    message: str,
    metadata: dict[str, Any],
    pipeline_version: str | None = None,
) -> Outcome:
    logger.info("object s3://%s/%s: failed: %s: %s", bucket, key, code, message)
    factory = session_factory(get_storage_settings().database_url)
    try:
        with transaction(factory) as session:
            job_id = record_object_failure(
                session,
                bucket=bucket,
                key=key,
                pipeline_version=pipeline_version or current_version(),
                code=code,
                message=message,
                caller_metadata=metadata,
            )
    except OperationalError as exc:
        raise TransientError(f"database: {exc.orig or exc}") from exc
    return Outcome(job_id, "failed", code)
