"""Object-store faults through a fault-injecting proxy in front of the loopback S3 endpoint: 5xx,
throttling and timeouts are retried; a missing or forbidden object is permanent, with its own code."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from storage.db import session_factory
from storage.objects import ObjectError, S3Objects, s3_client
from storage.schema import Job
from storage.settings import StorageSettings
from tests.e2e.conftest import enqueue, wait_for
from tests.reliability.conftest import WorkerProcess, reliability_env

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SLOW_DOWN = (
    b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>'
)
DENIED = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'


class FaultProxy:
    """Forwards to the S3 endpoint; `faults[method]` is a list of actions used up one request at a time:
    an HTTP status to answer with (503 = SlowDown, 500, 403), or a float = seconds to stall first."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.faults: dict[str, list[int | float]] = {}
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                proxy.seen.append(self.command)
                queue = proxy.faults.get(self.command, [])
                action = queue.pop(0) if queue else None
                if isinstance(action, int):
                    body = {503: SLOW_DOWN, 403: DENIED}.get(
                        action, b"<Error><Code>InternalError</Code></Error>"
                    )
                    self.send_response(action)
                    self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                if isinstance(action, float):
                    time.sleep(action)
                self.forward()

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                upstream.request(self.command, self.path, body, dict(self.headers))
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                upstream.close()

            do_GET = do_HEAD = do_PUT = handle_one

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(s3_endpoint)
    fault_proxy.thread.start()
    yield fault_proxy
    fault_proxy.server.shutdown()
    fault_proxy.server.server_close()


@pytest.fixture
def objects(proxy: FaultProxy) -> S3Objects:
    settings = StorageSettings(
        s3_endpoint_url=proxy.url,
        s3_region="us-east-1",
        s3_max_attempts=4,
        s3_read_timeout_s=1.0,
        s3_connect_timeout_s=1.0,
    )
    return S3Objects(s3_client(settings))


@pytest.fixture
def stored(s3_client, bucket) -> tuple[str, str, bytes]:
    body = b"\xff\xd8" + bytes(range(256)) * 64
    s3_client.put_object(Bucket=bucket, Key="faults/object.bin", Body=body)
    return bucket, "faults/object.bin", body


def test_throttling_and_5xx_are_retried(objects, proxy, stored, tmp_path: Path) -> None:
    bucket, key, body = stored
    proxy.faults = {"GET": [503, 500]}
    fetched = objects.fetch(bucket, key, tmp_path, 10**6)
    assert fetched.path.read_bytes() == body
    assert proxy.seen.count("GET") == 3


def test_a_stalled_read_is_retried(objects, proxy, stored, tmp_path: Path) -> None:
    bucket, key, body = stored
    proxy.faults = {"GET": [2.5]}
    fetched = objects.fetch(bucket, key, tmp_path, 10**6)
    assert fetched.path.read_bytes() == body and proxy.seen.count("GET") == 2


def test_persistent_5xx_is_transient_not_permanent(objects, proxy, stored, tmp_path: Path) -> None:
    bucket, key, _ = stored
    proxy.faults = {"HEAD": [500] * 10}
    with pytest.raises(ObjectError) as caught:
        objects.fetch(bucket, key, tmp_path, 10**6)
    assert not caught.value.permanent and proxy.seen.count("HEAD") == 4
    assert list(tmp_path.iterdir()) == []


def test_missing_and_forbidden_are_permanent(objects, proxy, stored, tmp_path: Path) -> None:
    bucket, key, _ = stored
    with pytest.raises(ObjectError) as missing:
        objects.fetch(bucket, "faults/nope.bin", tmp_path, 10**6)
    proxy.faults = {"HEAD": [403]}
    with pytest.raises(ObjectError) as forbidden:
        objects.fetch(bucket, key, tmp_path, 10**6)
    assert (missing.value.code, missing.value.permanent) == ("object_missing", True)
    assert (forbidden.value.code, forbidden.value.permanent) == ("object_forbidden", True)
    assert proxy.seen.count("HEAD") == 2  # neither was retried


def test_the_service_outlasts_s3_errors_and_fails_forbidden_for_good(
    proxy, postgres_url, redis_url, queues, s3_client, bucket, models_dir, dev_dir, tmp_path
):
    s3_client.upload_file(str(dev_dir / "real/deepface_photos/deepface_img11.jpg"), bucket, "faults/face.jpg")
    s3_client.upload_file(
        str(dev_dir / "real/deepface_photos/deepface_img12.jpg"), bucket, "faults/denied.jpg"
    )
    env = reliability_env(
        database_url=postgres_url,
        broker_url=redis_url,
        s3_endpoint=proxy.url,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_S3_MAX_ATTEMPTS="2",
        DFW_RETRY_BACKOFF_S="0.5",
        DFW_RETRY_BACKOFF_MAX_S="1",
    )
    factory = session_factory(postgres_url)
    worker = WorkerProcess(env, queues["detect"], tmp_path / "worker.log")
    proxy.faults = {"GET": [503, 503, 503, 500, 503]}  # more than botocore's own attempts: task retries too
    worker.start()
    try:
        enqueue(env, f"s3://{bucket}/faults/face.jpg")
        wait_for(
            lambda: final(factory, "faults/face.jpg") == ("done", None), 120, worker.log, "the retried job"
        )
        proxy.faults = {"HEAD": [403] * 20}
        enqueue(env, f"s3://{bucket}/faults/denied.jpg")
        wait_for(lambda: final(factory, "faults/denied.jpg") is not None, 60, worker.log, "the denied job")
    finally:
        worker.stop()
    assert final(factory, "faults/denied.jpg") == ("failed", "object_forbidden")
    assert "transient error, retry in" in worker.log.read_text()


def final(factory, key: str) -> tuple[str, str | None] | None:  # type: ignore[no-untyped-def]
    with factory() as session:
        job = session.execute(select(Job).where(Job.key == key, Job.status.in_(("done", "failed")))).scalar()
        return None if job is None else (job.status, job.error_code)
