"""`dfw retry`, `dfw reap` and `dfw reaggregate` against the real Postgres and Redis: dry runs change
nothing, real runs requeue exactly what can succeed, and a second run finds nothing left to do."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import select, update

from storage.db import session_factory, transaction
from storage.jobs import claim_job, fail_job, find_or_create_job, finish_job, record_object_failure
from storage.results import replace_results, upsert_media
from storage.schema import FaceScore, Job, Verdict
from tests.conftest import run_cli
from tests.e2e.conftest import enqueue, wait_for
from tests.integration.test_storage import INFO, results
from tests.reliability.conftest import WorkerProcess, reliability_env

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@pytest.fixture
def env(postgres_url, redis_url, queues, models_dir) -> dict[str, str]:
    return {
        "DFW_DATABASE_URL": postgres_url,
        "DFW_BROKER_URL": redis_url,
        "DFW_DETECT_QUEUE": queues["detect"],
        "DFW_MODEL_DIR": str(models_dir),
    }


def queued_messages(redis_url: str, queue: str) -> int:
    client = redis.Redis.from_url(redis_url)
    total = sum(
        client.llen(key) for key in client.scan_iter(match=f"{queue}*") if client.type(key) == b"list"
    )
    client.close()
    return total


def media_job(factory, tag: str, pipeline: str = "1.ops") -> int:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        media_id = upsert_media(session, uuid.uuid4().hex * 2, INFO)
        return find_or_create_job(
            session, media_id=media_id, bucket="ops", key=f"{tag}.jpg", pipeline_version=pipeline
        ).id


def test_retry_requeues_what_can_succeed(env, postgres_url, redis_url, queues) -> None:
    factory = session_factory(postgres_url)
    tag = uuid.uuid4().hex[:6]
    weights_missing, corrupt = media_job(factory, f"{tag}-a"), media_job(factory, f"{tag}-b")
    with transaction(factory) as session:
        fail_job(session, weights_missing, "model_unavailable", "weights missing")
        fail_job(session, corrupt, "corrupt", "cannot decode")
        missing = record_object_failure(
            session,
            bucket="ops",
            key=f"{tag}-gone.mp4",
            pipeline_version="1.ops",
            code="object_missing",
            message="gone",
        )
    dry = run_cli("retry", "--failed", "--since", "1h", "--dry-run", env=env)
    listed = {int(line.split("\t")[0]) for line in dry.stdout.splitlines()}
    assert dry.returncode == 0 and {weights_missing, missing} <= listed and corrupt not in listed
    assert queued_messages(redis_url, queues["detect"]) == 0
    real = run_cli("retry", "--failed", "--since", "1h", env=env)
    assert real.returncode == 0, real.stderr
    with factory() as session:
        rows = {
            j.id: j
            for j in session.execute(
                select(Job).where(Job.id.in_([weights_missing, corrupt, missing]))
            ).scalars()
        }
    assert (rows[weights_missing].status, rows[weights_missing].attempts) == ("queued", 0)
    assert rows[missing].status == "queued" and rows[corrupt].status == "failed"
    assert queued_messages(redis_url, queues["detect"]) == len(real.stdout.splitlines()) >= 2
    again = run_cli("retry", "--failed", "--since", "1h", env=env)
    assert {int(line.split("\t")[0]) for line in again.stdout.splitlines()}.isdisjoint(listed)
    named = run_cli("retry", "--failed", "--code", "corrupt", env=env)
    assert str(corrupt) in named.stdout.split()


def test_reap_requeues_expired_leases_once(env, postgres_url, redis_url, queues) -> None:
    factory = session_factory(postgres_url)
    job_id = media_job(factory, uuid.uuid4().hex[:6])
    with transaction(factory) as session:
        claim_job(session, job_id, "a-dead-worker", lease_s=60, max_attempts=5)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    dry = run_cli("reap", "--dry-run", env=env)
    assert str(job_id) in dry.stdout.split() and queued_messages(redis_url, queues["detect"]) == 0
    with factory() as session:
        assert session.get_one(Job, job_id).status == "running"
    real = run_cli("reap", env=env)
    assert str(job_id) in real.stdout.split()
    with factory() as session:
        job = session.get_one(Job, job_id)
        assert job.status == "queued" and job.worker is None and job.lease_expires_at > datetime.now(UTC)
    assert queued_messages(redis_url, queues["detect"]) >= 1
    assert str(job_id) not in run_cli("reap", env=env).stdout.split()  # the new deadline is in the future


def test_reaggregate_recomputes_verdicts_from_scores(env, postgres_url) -> None:
    factory = session_factory(postgres_url)
    job_id = media_job(factory, uuid.uuid4().hex[:6])
    stale = results(0.8, "real")  # a score of 0.8 stored with a stale "real" label
    with transaction(factory) as session:
        claim_job(session, job_id, "w", 60, 5)
        replace_results(session, job_id, **stale)
        finish_job(session, job_id, {}, "image")
    env = {**env, "DFW_AGGREGATE__THRESHOLD": "0.5"}
    dry = run_cli("reaggregate", "--dry-run", env=env)
    assert dry.returncode == 0 and f'"job_id": {job_id}' in dry.stdout
    with factory() as session:
        assert session.get_one(Verdict, job_id).label == "real"
    run_cli("reaggregate", env=env)
    with factory() as session:
        verdict = session.get_one(Verdict, job_id)
        assert (verdict.label, verdict.threshold, verdict.policy) == ("fake", 0.5, "max_track_mean/2")
    assert f'"job_id": {job_id}' not in run_cli("reaggregate", env=env).stdout


def test_backfill_reruns_one_detector_where_its_weights_changed(
    postgres_url, redis_url, queues, s3_endpoint, s3_client, bucket, models_dir, dev_dir, tmp_path
):
    s3_client.upload_file(
        str(dev_dir / "real/inthewild_video/itw_RealPutin.mp4"), bucket, "backfill/clip.mp4"
    )
    service = reliability_env(
        database_url=postgres_url,
        broker_url=redis_url,
        s3_endpoint=s3_endpoint,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_SAMPLING__FRAMES_PER_VIDEO="6",
        DFW_DETECTORS="dfwnet,meso4",
    )
    factory = session_factory(postgres_url)
    worker = WorkerProcess(service, queues["detect"], tmp_path / "worker.log")
    worker.start()
    try:
        enqueue(service, f"s3://{bucket}/backfill/clip.mp4")
        wait_for(lambda: job_of(factory, "backfill/clip.mp4") is not None, 120, worker.log, "the job")
    finally:
        worker.stop()
    job = job_of(factory, "backfill/clip.mp4")
    assert job is not None
    before = scores_of(factory, job.id, "meso4")
    untouched = scores_of(factory, job.id, "dfwnet")
    assert len(before) == len(untouched) >= 1
    retrained = {**service, "DFW_MESO4__WEIGHTS": "Meso4_F2F.h5"}  # new weights: a new meso4 version
    dry = run_cli("backfill", "--detector", "meso4", "--dry-run", env=retrained)
    assert dry.returncode == 0 and str(job.id) in dry.stdout.split()
    assert scores_of(factory, job.id, "meso4") == before
    done = run_cli("backfill", "--detector", "meso4", env=retrained)
    assert done.returncode == 0, done.stderr
    after = scores_of(factory, job.id, "meso4")
    assert scores_of(factory, job.id, "dfwnet") == untouched  # the other detector's rows stay as they were
    assert [key for key, _, _ in after] == [key for key, _, _ in before]  # same faces, nothing detected anew
    assert {version for _, version, _ in after} != {version for _, version, _ in before}
    assert [score for _, _, score in after] != [score for _, _, score in before]
    with factory() as session:
        verdict = session.get_one(Verdict, job.id)
        assert verdict.tracks == 1  # one person: the verdict is the mean of the re-run scores
        assert verdict.detectors["meso4"] == pytest.approx(sum(s for _, _, s in after) / len(after))
    assert str(job.id) not in run_cli("backfill", "--detector", "meso4", env=retrained).stdout.split()


def job_of(factory, key: str) -> Job | None:  # type: ignore[no-untyped-def]
    with factory() as session:
        return session.execute(select(Job).where(Job.key == key, Job.status == "done")).scalar()


def scores_of(factory, job_id: int, detector: str) -> list[tuple[tuple[int, int], str, float]]:  # type: ignore[no-untyped-def]
    with factory() as session:
        rows = session.execute(
            select(FaceScore)
            .where(FaceScore.job_id == job_id, FaceScore.detector == detector)
            .order_by(FaceScore.frame_index, FaceScore.face_index)
        ).scalars()
        return [((r.frame_index, r.face_index), r.detector_version, r.score) for r in rows]
