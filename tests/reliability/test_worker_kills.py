"""A real worker SIGKILLed up to 20 times, each at a random moment while it holds a job, over a batch of 50
jobs: every job ends `done` exactly once, with one verdict and no duplicate rows. Recovery: acks_late +
reject_on_worker_lost (a lost child's message returns to the queue), a lease on the job row, Redis's
visibility timeout (a killed main process's unacked messages come back), and the reaper for leases nobody
renews."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import session_factory
from storage.schema import FaceScore, Frame, Job, Verdict
from tests.conftest import REPO
from tests.e2e.conftest import enqueue
from tests.reliability.conftest import WorkerProcess, reliability_env

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

KILLS = 20
CLAIMED = ": claimed (attempt "  # the detect task's log line when it takes a job


def batch(dev_manifest: list[dict[str, str]]) -> list[str]:
    images = [r["path"] for r in dev_manifest if r["source"] == "utkface"][:40]
    videos = [r["path"] for r in dev_manifest if r["source"] == "inthewild_video"][:10]
    return images + videos


def wait_until_ready(worker: WorkerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.log.exists() and worker.log.read_text(errors="replace").count(" ready.") >= worker.starts:
            return
        time.sleep(0.1)
    pytest.fail(f"worker did not become ready:\n{worker.log.read_text()[-3000:]}")


def wait_until_claimed(worker: WorkerProcess, finished: Callable[[], bool], timeout: float = 90) -> bool:
    """True once this start of the worker has claimed a job (its log says so); False when every job is
    finished first, or the timeout passes."""
    before = worker.claims_at_start
    deadline = time.monotonic() + timeout
    checked = 0.0
    while time.monotonic() < deadline:
        if worker.log.read_text(errors="replace").count(CLAIMED) > before:
            return True
        if time.monotonic() - checked > 1:
            if finished():
                return False
            checked = time.monotonic()
        time.sleep(0.05)
    return False


def all_done(factory, keys: list[str]) -> bool:  # type: ignore[no-untyped-def]
    return sum(job.status == "done" for job in job_rows(factory, keys)) == len(keys)


def job_rows(factory, keys: list[str]) -> list[Job]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return list(session.execute(select(Job).where(Job.key.in_(keys))).scalars())


def test_worker_killed_twenty_times(
    postgres_url,
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
    files = batch(dev_manifest)
    keys = [f"kills/{i:02d}-{Path(p).name}" for i, p in enumerate(files)]
    for path, key in zip(files, keys, strict=True):
        s3_client.upload_file(str(dev_dir / path), bucket, key)
    env = reliability_env(
        database_url=postgres_url,
        broker_url=redis_url,
        s3_endpoint=s3_endpoint,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_LEASE_S="6",
        DFW_MAX_ATTEMPTS="40",
        DFW_VISIBILITY_TIMEOUT_S="15",
        DFW_RETRY_BACKOFF_S="0.5",
        DFW_RETRY_BACKOFF_MAX_S="2",
    )
    factory = session_factory(postgres_url)
    worker = WorkerProcess(env, queues["detect"], tmp_path / "worker.log")
    reaper = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "reap", "--every", "2"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "reaper.log").open("wb"),
    )
    rng = random.Random(2026)
    started = time.monotonic()
    try:
        worker.start()
        enqueue(env, *[f"s3://{bucket}/{key}" for key in keys])
        kills = 0
        while kills < KILLS:
            wait_until_ready(worker)
            # then kill at a random moment of a job's work (download, decode, detector): a fixed delay after
            # "ready." lands before the first claim when the child process is slow to import its models
            if not wait_until_claimed(worker, lambda: all_done(factory, keys)):
                break
            time.sleep(rng.uniform(0.0, 1.5))
            worker.kill()
            kills += 1
            worker.start()
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            if all_done(factory, keys):
                break
            time.sleep(1)
    finally:
        worker.stop()
        reaper.terminate()
        reaper.wait(timeout=30)
    elapsed = time.monotonic() - started

    jobs = job_rows(factory, keys)
    by_key: dict[str, list[Job]] = {}
    for job in jobs:
        by_key.setdefault(job.key, []).append(job)
    lost = [key for key in keys if not any(j.status == "done" for j in by_key.get(key, []))]
    with factory() as session:
        ids = [job.id for job in jobs]
        verdicts = session.scalar(select(func.count()).select_from(Verdict).where(Verdict.job_id.in_(ids)))
        faces = session.scalar(select(func.sum(Verdict.faces)).where(Verdict.job_id.in_(ids)))
        face_rows = session.scalar(
            select(func.count()).select_from(FaceScore).where(FaceScore.job_id.in_(ids))
        )
        frames = session.scalar(select(func.sum(Verdict.frames_decoded)).where(Verdict.job_id.in_(ids)))
        frame_rows = session.scalar(select(func.count()).select_from(Frame).where(Frame.job_id.in_(ids)))
    retried = sum(job.attempts > 1 for job in jobs)
    figures = {
        "jobs_claimed_more_than_once": retried,
        "jobs": len(keys),
        "kills": kills,
        "lost": len(lost),
        "job_rows": len(jobs),
        "verdicts": verdicts,
        "duplicate_face_rows": face_rows - faces,
        "duplicate_frame_rows": frame_rows - frames,
        "max_attempts_used": max(j.attempts for j in jobs),
        "seconds": round(elapsed, 1),
    }
    print("worker-kill figures:", json.dumps(figures))
    assert not lost, f"lost {lost}; worker log tail:\n{(tmp_path / 'worker.log').read_text()[-4000:]}"
    assert len(jobs) == len(keys) and all(len(v) == 1 for v in by_key.values())
    assert verdicts == len(keys) and face_rows == faces and frame_rows == frames
    assert retried >= 1, "no kill landed while a job was being analysed: the test proved nothing"
