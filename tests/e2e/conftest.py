"""A real Celery worker process against the real Redis, Postgres and a loopback S3 endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def service_env(postgres_url, redis_url, queues, s3_endpoint, models_dir, tmp_path) -> dict[str, str]:
    work = tmp_path / "downloads"
    work.mkdir()
    return {
        **os.environ,
        "DFW_DATABASE_URL": postgres_url,
        "DFW_BROKER_URL": redis_url,
        "DFW_DETECT_QUEUE": queues["detect"],
        "DFW_EXPLAIN_QUEUE": queues["explain"],
        "DFW_S3_ENDPOINT_URL": s3_endpoint,
        "DFW_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DFW_MODEL_DIR": str(models_dir),
        "DFW_MODEL_FETCH": "false",
        "DFW_TMP_DIR": str(work),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }


@contextmanager
def running_worker(
    env: dict[str, str], queues: str, log: Path, extra_args: tuple[str, ...] = ()
) -> Iterator[Path]:
    """`dfw worker --queues QUEUES [EXTRA_ARGS]` in its own process; stopped with SIGTERM afterwards."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasks.cli",
                "worker",
                "--queues",
                queues,
                "--concurrency",
                "1",
                "--hostname",
                f"e2e-{os.getpid()}-{log.stem}@%h",
                *extra_args,
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            yield log
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def worker_log(service_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    with running_worker(service_env, service_env["DFW_DETECT_QUEUE"], tmp_path / "worker.log") as log:
        yield log


def enqueue(env: dict[str, str], *urls: str, meta: str = "upload_id=u-1") -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "enqueue", *urls, "--meta", meta, "--priority", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == len(urls)


def wait_for(predicate: Callable[[], bool], timeout: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-5000:]}")
