"""A job over the soft time limit fails with `timeout`, its temporary file is removed, and the worker goes
on to the next job."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from storage.db import session_factory
from storage.schema import Job
from tests.e2e.conftest import enqueue
from tests.reliability.conftest import WorkerProcess, reliability_env

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def test_soft_time_limit_fails_the_job_and_cleans_up(
    postgres_url, redis_url, queues, s3_endpoint, s3_client, bucket, models_dir, dev_dir, tmp_path
):
    s3_client.upload_file(str(dev_dir / "real/ffpp_video/ffpp_youtube_519.mp4"), bucket, "slow/long.mp4")
    s3_client.upload_file(str(dev_dir / "real/deepface_photos/deepface_img13.jpg"), bucket, "slow/after.jpg")
    env = reliability_env(
        database_url=postgres_url,
        broker_url=redis_url,
        s3_endpoint=s3_endpoint,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_SOFT_TIME_LIMIT_S="2",
        DFW_TIME_LIMIT_S="30",
        DFW_SAMPLING__FRAMES_PER_VIDEO="400",
    )  # 400 frames of a 640x480 clip: far over 2 s
    factory = session_factory(postgres_url)
    worker = WorkerProcess(env, queues["detect"], tmp_path / "worker.log")
    worker.start()
    try:
        enqueue(env, f"s3://{bucket}/slow/long.mp4", f"s3://{bucket}/slow/after.jpg")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with factory() as session:
                final = {
                    j.key: j
                    for j in session.execute(
                        select(Job).where(Job.key.like("slow/%"), Job.status.in_(("done", "failed")))
                    ).scalars()
                }
            if len(final) == 2:
                break
            time.sleep(0.5)
    finally:
        worker.stop()
    assert len(final) == 2, worker.log.read_text()[-4000:]
    slow, after = final["slow/long.mp4"], final["slow/after.jpg"]
    assert (slow.status, slow.error_code) == ("failed", "timeout")
    assert after.status == "done"  # the worker went on
    assert list((tmp_path / "downloads").iterdir()) == []
