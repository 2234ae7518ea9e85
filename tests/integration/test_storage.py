"""Job and result rows against the real Postgres, schema from the Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from storage.db import session_factory, transaction
from storage.jobs import claim_job, fail_job, find_or_create_job, finish_job, record_object_failure
from storage.queries import find_jobs, flagged, job_details
from storage.results import lookup_object, replace_results, upsert_media, upsert_object
from storage.schema import FaceScore, Job, Media, Verdict

pytestmark = pytest.mark.integration

INFO = {
    "kind": "image",
    "format": "jpeg",
    "codec": "jpeg",
    "size_bytes": 1000,
    "width": 200,
    "height": 200,
    "duration_s": None,
    "fps": None,
    "frame_count": 1,
}


def sha() -> str:
    return uuid.uuid4().hex * 2


def results(score: float, label: str) -> dict:
    face = {
        "frame_index": 0,
        "face_index": 0,
        "timestamp_s": 0.0,
        "track_id": 0,
        "box_x": 1.0,
        "box_y": 2.0,
        "box_w": 30.0,
        "box_h": 40.0,
        "face_confidence": 0.9,
        "detector": "meso4",
        "detector_version": "meso4/1@0123abcd",
        "weights": {"Meso4_DF.h5": "abc"},
        "sampling": {"frames_requested": 1},
        "score": score,
    }
    return {
        "frames": [{"frame_index": 0, "timestamp_s": 0.0, "width": 200, "height": 200, "faces": 1}],
        "face_scores": [face],
        "tracks": [
            {
                "track_id": 0,
                "faces": 1,
                "first_frame": 0,
                "last_frame": 0,
                "score": score,
                "detectors": {"meso4": score},
                "counted": True,
            }
        ],
        "verdict": {
            "label": label,
            "score": score,
            "threshold": 0.5,
            "policy": "max_track_mean/2",
            "detectors": {"meso4": score},
            "frames_requested": 1,
            "frames_decoded": 1,
            "faces": 1,
            "tracks": 1,
        },
    }


def test_same_content_and_pipeline_is_one_job(postgres_url: str) -> None:
    factory = session_factory(postgres_url)
    digest = sha()
    with transaction(factory) as session:
        media_id = upsert_media(session, digest, INFO)
        first = find_or_create_job(
            session, media_id=media_id, bucket="b", key="one.jpg", pipeline_version="1.a"
        )
    with transaction(factory) as session:
        again = upsert_media(session, digest, INFO)
        second = find_or_create_job(
            session, media_id=again, bucket="b", key="copy.jpg", pipeline_version="1.a"
        )
        other = find_or_create_job(session, media_id=again, bucket="b", key="one.jpg", pipeline_version="1.b")
    assert again == media_id
    assert first.created and not second.created and second.id == first.id
    assert other.created and other.id != first.id
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Media).where(Media.sha256 == digest)) == 1


def test_claim_lease_and_attempt_cap(postgres_url: str) -> None:
    factory = session_factory(postgres_url)
    with transaction(factory) as session:
        media_id = upsert_media(session, sha(), INFO)
        job = find_or_create_job(session, media_id=media_id, bucket="b", key="k", pipeline_version="1.a")
    with transaction(factory) as session:
        first = claim_job(session, job.id, "w1", lease_s=60, max_attempts=2)
    with transaction(factory) as session:
        busy = claim_job(session, job.id, "w2", lease_s=60, max_attempts=2)
    assert first.claimed and first.attempts == 1
    assert not busy.claimed and busy.status == "running"
    with transaction(factory) as session:  # the lease expires: another worker may take it over
        session.execute(
            Job.__table__.update()
            .where(Job.id == job.id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with transaction(factory) as session:
        takeover = claim_job(session, job.id, "w2", lease_s=60, max_attempts=2)
    assert takeover.claimed and takeover.attempts == 2
    with transaction(factory) as session:
        session.execute(
            Job.__table__.update()
            .where(Job.id == job.id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with transaction(factory) as session:
        exhausted = claim_job(session, job.id, "w3", lease_s=60, max_attempts=2)
    assert not exhausted.claimed and exhausted.attempts == 2


def test_rerun_replaces_rows_and_queries_read_them(postgres_url: str) -> None:
    factory = session_factory(postgres_url)
    digest = sha()
    with transaction(factory) as session:
        media_id = upsert_media(session, digest, INFO)
        upsert_object(
            session,
            bucket="b",
            key="face.jpg",
            etag='"e1"',
            size=1000,
            media_id=media_id,
            caller_metadata={"upload_id": "u1"},
        )
        job = find_or_create_job(
            session, media_id=media_id, bucket="b", key="face.jpg", pipeline_version="1.a"
        )
        claim_job(session, job.id, "w", 60, 5)
    for score, label in ((0.3, "real"), (0.8, "fake")):  # the second run overwrites the first
        with transaction(factory) as session:
            replace_results(session, job.id, **results(score, label))
            finish_job(session, job.id, {"decode": 0.1}, "image")
    with factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(FaceScore).where(FaceScore.job_id == job.id)) == 1
        )
        assert session.scalar(select(Verdict.label).where(Verdict.job_id == job.id)) == "fake"
        assert lookup_object(session, "b", "face.jpg", '"e1"', 1000) == media_id
        assert lookup_object(session, "b", "face.jpg", '"e2"', 1000) is None
        (by_sha,) = find_jobs(session, digest)
        assert by_sha["job_id"] == job.id and by_sha["verdict"]["score"] == pytest.approx(0.8)
        assert find_jobs(session, str(job.id))[0]["media"]["sha256"] == digest
        assert job_details(session, job.id)["faces"][0]["box"] == [1.0, 2.0, 30.0, 40.0]
        recent = flagged(session, datetime.now(UTC) - timedelta(hours=1), limit=1000)
        assert job.id in [row["job_id"] for row in recent]
        assert flagged(session, datetime.now(UTC) + timedelta(hours=1)) == []
        with pytest.raises(ValueError):
            find_jobs(session, "not-a-ref")


def test_object_failures_are_one_row_per_object(postgres_url: str) -> None:
    factory = session_factory(postgres_url)
    key = f"missing-{uuid.uuid4().hex}.mp4"
    with transaction(factory) as session:
        first = record_object_failure(
            session, bucket="b", key=key, pipeline_version="1.a", code="object_missing", message="gone"
        )
    with transaction(factory) as session:
        second = record_object_failure(
            session, bucket="b", key=key, pipeline_version="1.a", code="object_missing", message="still gone"
        )
    assert first == second
    with factory() as session:
        job = session.get_one(Job, first)
        assert (job.status, job.error_code, job.attempts, job.error_message) == (
            "failed",
            "object_missing",
            2,
            "still gone",
        )


def test_failed_job_keeps_code_and_message(postgres_url: str) -> None:
    factory = session_factory(postgres_url)
    with transaction(factory) as session:
        media_id = upsert_media(session, sha(), INFO)
        job = find_or_create_job(session, media_id=media_id, bucket="b", key="k", pipeline_version="1.a")
        fail_job(session, job.id, "corrupt", "cannot decode")
    with factory() as session:
        (row,) = find_jobs(session, str(job.id))
    assert row["status"] == "failed" and row["error"] == {"code": "corrupt", "message": "cannot decode"}
