"""`dfw flower` starts Celery's Flower on the project's broker (the real Redis), behind basic auth."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration


def get(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_flower_serves_the_broker_behind_basic_auth(redis_url, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "DFW_BROKER_URL": redis_url, "PYTHONPATH": str(REPO)}
    command = ["flower", "--port", str(port), "--basic-auth", "ops:s3cret", "--url-prefix", "flower"]
    with (tmp_path / "flower.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tasks.cli", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}/flower"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/healthcheck") == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "flower.log").read_text()
            time.sleep(0.3)
        else:
            pytest.fail("flower did not answer: " + (tmp_path / "flower.log").read_text())
        assert get(f"{base}/workers") == 401
        assert get(f"{base}/workers", "ops:wrong") == 401
        assert get(f"{base}/workers", "ops:s3cret") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
