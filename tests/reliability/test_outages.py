"""Broker and database outages in the middle of a batch, against servers of the test's own: every job
completes once; producers get a clear error during a broker outage, never a silent loss."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from storage.db import get_engine, session_factory
from storage.schema import Job, Verdict
from tests.conftest import run_cli
from tests.e2e.conftest import enqueue
from tests.reliability.conftest import WorkerProcess, reliability_env

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]


def upload_batch(s3_client, bucket: str, dev_dir: Path, dev_manifest, prefix: str, count: int) -> list[str]:
    paths = [r["path"] for r in dev_manifest if r["source"] == "utkface"][200 : 200 + count]
    keys = [f"{prefix}/{i:02d}-{Path(p).name}" for i, p in enumerate(paths)]
    for path, key in zip(paths, keys, strict=True):
        s3_client.upload_file(str(dev_dir / path), bucket, key)
    return keys


def done_keys(database_url: str, keys: list[str]) -> dict[str, list[str]]:
    try:
        with session_factory(database_url)() as session:
            rows = session.execute(select(Job.key, Job.status).where(Job.key.in_(keys))).all()
    except OperationalError:
        return {}
    found: dict[str, list[str]] = {}
    for key, status in rows:
        found.setdefault(key, []).append(status)
    return found


def wait_done(database_url: str, keys: list[str], timeout: float, log: Path) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = done_keys(database_url, keys)
        if all(found.get(key) == ["done"] for key in keys):
            return found
        time.sleep(1)
    pytest.fail(f"not all done: {done_keys(database_url, keys)}\nworker log:\n{log.read_text()[-5000:]}")


def test_postgres_down_for_30_seconds(
    private_postgres,
    redis_url,
    queues,
    s3_endpoint,
    s3_client,
    bucket,
    models_dir,
    dev_dir,
    dev_manifest,
    tmp_path,
):
    keys = upload_batch(s3_client, bucket, dev_dir, dev_manifest, "pg-outage", 20)
    env = reliability_env(
        database_url=private_postgres.url,
        broker_url=redis_url,
        s3_endpoint=s3_endpoint,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_RETRY_BACKOFF_S="1",
        DFW_RETRY_BACKOFF_MAX_S="5",
        DFW_SAMPLING__FRAMES_PER_VIDEO="4",
    )
    worker = WorkerProcess(env, queues["detect"], tmp_path / "worker.log")
    worker.start()
    try:
        enqueue(env, *[f"s3://{bucket}/{key}" for key in keys])
        deadline = time.monotonic() + 120
        while sum(v == ["done"] for v in done_keys(private_postgres.url, keys).values()) < 3:
            assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
            time.sleep(0.2)
        get_engine(private_postgres.url).dispose()
        private_postgres.stop()
        outage_started = time.monotonic()
        time.sleep(30)
        private_postgres.start()
        outage = time.monotonic() - outage_started
        found = wait_done(private_postgres.url, keys, 240, worker.log)
    finally:
        worker.stop()
    log = worker.log.read_text()
    assert "transient error, retry in" in log  # the outage was seen and waited out, not skipped
    with session_factory(private_postgres.url)() as session:
        verdicts = session.execute(select(Verdict.job_id).join(Job).where(Job.key.in_(keys))).all()
    assert len(found) == len(keys) and len(verdicts) == len(keys)
    print(
        "postgres-outage figures:", json.dumps({"jobs": len(keys), "outage_s": round(outage, 1), "lost": 0})
    )


def test_redis_restarted_mid_batch(
    postgres_url,
    private_redis,
    queues,
    s3_endpoint,
    s3_client,
    bucket,
    models_dir,
    dev_dir,
    dev_manifest,
    tmp_path,
):
    keys = upload_batch(s3_client, bucket, dev_dir, dev_manifest, "redis-restart", 22)
    batch, late = keys[:20], keys[20:]
    env = reliability_env(
        database_url=postgres_url,
        broker_url=private_redis.url,
        s3_endpoint=s3_endpoint,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_VISIBILITY_TIMEOUT_S="10",
        DFW_RETRY_BACKOFF_S="1",
        DFW_RETRY_BACKOFF_MAX_S="5",
    )
    worker = WorkerProcess(env, queues["detect"], tmp_path / "worker.log")
    worker.start()
    try:
        enqueue(env, *[f"s3://{bucket}/{key}" for key in batch])
        deadline = time.monotonic() + 120
        while sum(v == ["done"] for v in done_keys(postgres_url, batch).values()) < 3:
            assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
            time.sleep(0.2)
        private_redis.stop()
        refused = run_cli("enqueue", *[f"s3://{bucket}/{key}" for key in late], env=env, timeout=120)
        time.sleep(5)
        private_redis.start()
        enqueue(env, *[f"s3://{bucket}/{key}" for key in late])  # the producer retries after its clear error
        found = wait_done(postgres_url, keys, 240, worker.log)
    finally:
        worker.stop()
    assert (
        refused.returncode == 1
        and "could not enqueue" in refused.stderr
        and "Traceback" not in refused.stderr
    )
    assert refused.stdout == ""  # nothing was reported as enqueued while the broker was down
    assert len(found) == len(keys)
