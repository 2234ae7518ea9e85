"""End to end: objects in a real S3 endpoint, `dfw enqueue` to real Redis, a real Celery worker process,
verdicts in the real Postgres. Enqueuing the same content again adds nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.db import session_factory
from storage.schema import FaceScore, Frame, Job, Media, Track, Verdict
from tests.e2e.conftest import enqueue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

VIDEO = "real/inthewild_video/itw_RealObama.mp4"
IMAGE = "real/deepface_photos/deepface_img10.jpg"


def counts(factory) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table))
            for table in (Media, Job, Frame, FaceScore, Track, Verdict)
        }


def finished_jobs(factory) -> dict[str, Job]:  # type: ignore[no-untyped-def]
    with factory() as session:
        rows = session.execute(select(Job).where(Job.status.in_(("done", "failed")))).scalars().all()
        return {job.key: job for job in rows}


def test_detect_media_end_to_end(service_env, worker_log, s3_client, bucket, dev_dir, postgres_url, tmp_path):
    s3_client.upload_file(str(dev_dir / VIDEO), bucket, "uploads/clip.mp4")
    s3_client.upload_file(str(dev_dir / IMAGE), bucket, "uploads/photo.jpg")
    s3_client.put_object(Bucket=bucket, Key="uploads/notes.mp4", Body=b"this is not a video\n" * 50)
    factory = session_factory(postgres_url)
    keys = ["uploads/clip.mp4", "uploads/photo.jpg", "uploads/notes.mp4", "uploads/missing.mp4"]
    enqueue(service_env, *[f"s3://{bucket}/{k}" for k in keys])
    wait_for(lambda: set(finished_jobs(factory)) >= set(keys), 240, worker_log, "four final jobs")

    jobs = finished_jobs(factory)
    assert (jobs["uploads/notes.mp4"].status, jobs["uploads/notes.mp4"].error_code) == ("failed", "not_media")
    assert (jobs["uploads/missing.mp4"].status, jobs["uploads/missing.mp4"].error_code) == (
        "failed",
        "object_missing",
    )
    video, image = jobs["uploads/clip.mp4"], jobs["uploads/photo.jpg"]
    assert video.status == "done" and image.status == "done", worker_log.read_text()[-3000:]
    assert video.caller_metadata == {"upload_id": "u-1"} and video.priority == 3
    with factory() as session:
        media = session.get_one(Media, video.media_id)
        assert (media.kind, media.width, media.height) == ("video", 386, 404)
        assert media.duration_s == pytest.approx(3.92, abs=0.1) and media.codec
        verdict = session.get_one(Verdict, video.id)
        assert verdict.frames_requested == 16 and 1 <= verdict.frames_decoded <= 16
        assert verdict.label in {"fake", "real", "uncertain"} and 0.0 <= verdict.score <= 1.0
        assert verdict.faces >= verdict.frames_decoded // 2 and verdict.tracks >= 1
        scores = session.execute(select(FaceScore).where(FaceScore.job_id == video.id)).scalars().all()
        # the default detector, the project's dfwmeso, scores every face with its shipped weights
        assert len(scores) == verdict.faces
        assert all(s.detector == "dfwmeso" and s.detector_version.startswith("dfwmeso/1@") for s in scores)
        assert all(
            len(s.weights["dfwmeso-v1.safetensors"]) == 64 and s.sampling["frames_requested"] == 16
            for s in scores
        )
        assert all(0.0 <= s.score <= 1.0 and s.box_w > 20 for s in scores)
        frames = session.execute(select(Frame).where(Frame.job_id == video.id)).scalars().all()
        assert len(frames) == verdict.frames_decoded
        image_verdict = session.get_one(Verdict, image.id)
        assert image_verdict.frames_decoded == 1 and image_verdict.faces == 1
    assert list((tmp_path / "downloads").iterdir()) == []  # temporary downloads are removed

    before = counts(factory)
    s3_client.upload_file(str(dev_dir / VIDEO), bucket, "uploads/same-content-new-key.mp4")
    enqueue(service_env, f"s3://{bucket}/uploads/clip.mp4", f"s3://{bucket}/uploads/same-content-new-key.mp4")
    wait_for(
        lambda: (
            worker_log.read_text().count("already analysed") >= 1
            and worker_log.read_text().count("not claimed (status done") >= 1
        ),
        120,
        worker_log,
        "the duplicate enqueues to be handled",
    )
    assert counts(factory) == before
    assert list((tmp_path / "downloads").iterdir()) == []
