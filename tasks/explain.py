"""`dfw.explain_media`: an explanation for a finished job, on its own `explain` queue.

The detect task enqueues it after a verdict the explain policy selects (default: fake or uncertain). It
reads the verdict and scores from Postgres, re-fetches and re-samples the media only when the explainer
looks at pixels, picks the top-k most suspicious faces or frames, runs the configured explainer once per
process, and upserts one explanation row per job and explainer. The verdict is never changed here.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from storage.db import session_factory, transaction
from storage.objects import ObjectError
from storage.queries import job_details
from storage.results import upsert_explanation
from storage.schema import Explanation, Job, Media
from storage.schema import Verdict as VerdictRow
from storage.settings import get_storage_settings
from tasks.app import app
from tasks.detect import Outcome, TransientError, backoff_s, get_objects
from tasks.metrics import time_stage
from tasks.rows import evidence_inputs, media_info_from_row, verdict_from_rows
from tasks.settings import get_service_settings
from worker.explain import create_explainer
from worker.explain.base import Evidence, Explainer
from worker.explain.base import Explanation as ExplanationData
from worker.explain.errors import ExplainerUnavailable
from worker.explain.selection import select_evidence
from worker.media import probe_media, sample_frames
from worker.media.frames import replay_method
from worker.settings import get_settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_explainer: Explainer | None = None


def get_explainer() -> Explainer:
    global _explainer
    with _lock:
        if _explainer is None:
            explainer = create_explainer(get_settings().explain)
            explainer.load()
            _explainer = explainer
        return _explainer


def warm_explainer() -> None:
    try:
        explainer = get_explainer()
    except Exception:
        logger.exception("explainer unavailable at worker start; explain tasks will retry")
        return
    logger.info("explainer %s loaded", explainer.name)


def enqueue_explain(job_id: int) -> None:
    """Ask for an explanation; a broker error is logged, never fails the detect job that asked."""
    try:
        explain_media.apply_async(args=[job_id], queue=get_service_settings().explain_queue)
    except Exception:
        logger.exception("job %s: could not enqueue its explanation", job_id)


@app.task(name="dfw.explain_media", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def explain_media(self: Any, job_id: int) -> dict[str, Any]:
    settings = get_service_settings()
    try:
        return run_explain(job_id).to_dict()
    except TransientError as exc:
        if self.request.retries + 1 >= settings.max_attempts:
            logger.error(
                "job %s: no explanation after %s attempts: %s", job_id, self.request.retries + 1, exc
            )
            return Outcome(job_id, "failed", str(exc)).to_dict()
        delay = backoff_s(self.request.retries)
        logger.warning("job %s: explanation failed transiently, retry in %.1fs: %s", job_id, delay, exc)
        raise self.retry(exc=exc, countdown=delay) from exc


def load_job(session: Session, job_id: int) -> tuple[Job, Media, VerdictRow] | None:
    row = session.execute(
        select(Job, Media, VerdictRow)
        .join(Media, Media.id == Job.media_id)
        .join(VerdictRow, VerdictRow.job_id == Job.id)
        .where(Job.id == job_id, Job.status == "done")
    ).one_or_none()
    return None if row is None else (row[0], row[1], row[2])


def run_explain(job_id: int) -> Outcome:
    factory = session_factory(get_storage_settings().database_url)
    explainer = get_explainer()
    try:
        with factory() as session:
            found = load_job(session, job_id)
            if found is None:
                return Outcome(job_id, "skipped", "no finished job with a verdict")
            job, media, verdict_row = found
            exists = session.execute(
                select(Explanation.id).where(
                    Explanation.job_id == job_id, Explanation.explainer == explainer.name
                )
            ).first()
            if exists:
                return Outcome(job_id, "duplicate", f"already explained by {explainer.name}")
            details = job_details(session, job_id)
        info = media_info_from_row(media)
        verdict = verdict_from_rows(verdict_row, details["tracks"])
        evidence = gather_evidence(job, details, explainer.needs_images)
        with time_stage("explain"):
            explanation = explain_safely(explainer, info, verdict, evidence)
        with transaction(factory) as session:
            upsert_explanation(session, job_id, explanation_row(explanation, evidence))
    except OperationalError as exc:
        raise TransientError(f"database: {exc.orig or exc}", job_id) from exc
    except ObjectError as exc:
        if exc.permanent:
            logger.warning("job %s: cannot explain: %s", job_id, exc)
            return Outcome(job_id, "failed", exc.code)
        raise TransientError(str(exc), job_id) from exc
    logger.info("job %s: explained by %s (agrees: %s)", job_id, explanation.explainer, explanation.agrees)
    return Outcome(job_id, "done", explanation.explainer)


def explain_safely(
    explainer: Explainer, info: Any, verdict: Any, evidence: list[Evidence]
) -> ExplanationData:
    """Outages worth waiting out become TransientError (retried); a misconfigured explainer fails loudly."""
    try:
        return explainer.explain(info, verdict, evidence)
    except ExplainerUnavailable as exc:
        if exc.transient:
            raise TransientError(f"explainer {explainer.name}: {exc}") from exc
        raise


def gather_evidence(job: Job, details: dict[str, Any], needs_images: bool) -> list[Evidence]:
    worker_settings = get_settings()
    faces, face_scores, frame_scores = evidence_inputs(details)
    frames = None
    if needs_images:
        frames = decode_again(job, worker_settings)
    return select_evidence(
        frames,
        faces,
        face_scores,
        frame_scores,
        worker_settings.explain.top_k,
        worker_settings.faces.crop_margin,
    )


def decode_again(job: Job, worker_settings: Any) -> list[Any]:
    """The frames the detectors saw: same object, same deterministic sampling as recorded in the lineage."""
    frames_per_video = int(
        job.lineage.get("sampling", {}).get("frames_per_video", worker_settings.sampling.frames_per_video)
    )
    limits = worker_settings.limits
    fetched = get_objects().fetch(job.bucket, job.key, get_service_settings().tmp_dir, limits.max_bytes)
    try:
        info = probe_media(Path(fetched.path), limits)
        method = replay_method(job.sampling_method)
        return list(sample_frames(Path(fetched.path), info, limits, frames_per_video, method=method).frames)
    finally:
        fetched.path.unlink(missing_ok=True)


def explanation_row(explanation: ExplanationData, evidence: list[Evidence]) -> dict[str, Any]:
    shown = [
        {
            "kind": e.kind,
            "frame_index": e.frame_index,
            "timestamp_s": e.timestamp_s,
            "track_id": e.track_id,
            "score": e.score,
        }
        for e in evidence
    ]
    return {
        "explainer": explanation.explainer,
        "model": explanation.model,
        "revision": explanation.revision,
        "prompt": explanation.prompt,
        "text": explanation.text,
        "answer": explanation.answer,
        "agrees": explanation.agrees,
        "latency_s": explanation.latency_s,
        "evidence": {"items": shown},
    }
