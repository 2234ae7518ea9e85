"""End to end: final verdicts are POSTed, signed, to a real HTTP server on loopback by a real worker that
consumes the detect and webhooks queues; 5xx answers are retried with backoff, a 400 is final, every
attempt is a `webhook_deliveries` row, and a duplicate delivery task sends nothing again."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import session_factory
from storage.schema import Job, WebhookDelivery
from tasks.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.conftest import REPO
from tests.e2e.conftest import running_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SECRET = "e2e-webhook-secret"
PHOTOS = "real/deepface_photos"


class Receiver:
    """Records every POST by path; `/flaky` answers 500 to its first `fail_first` requests, `/bad` 400."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def answer(self, path: str) -> int:
        with self.lock:
            seen = sum(1 for r in self.requests if r["path"] == path)
        if path == "/bad":
            return 400
        if path == "/flaky" and seen <= self.fail_first:
            return 500
        return 200

    def on(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver(fail_first=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "at": time.time(),
                    }
                )
            code = state.answer(self.path)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def enqueue_with_callback(env: dict[str, str], url: str, callback: str | None, meta: str) -> None:
    args = [sys.executable, "-m", "tasks.cli", "enqueue", url, "--meta", meta]
    if callback:
        args += ["--callback", callback]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr


def deliveries_of(factory: Any, key: str) -> list[WebhookDelivery]:
    with factory() as session:
        return list(
            session.execute(
                select(WebhookDelivery)
                .join(Job, Job.id == WebhookDelivery.job_id)
                .where(Job.key == key)
                .order_by(WebhookDelivery.attempt)
            ).scalars()
        )


def test_signed_webhooks_with_retries(
    service_env, queues, s3_client, bucket, dev_dir, postgres_url, tmp_path, receiver
):
    base, state = receiver
    env = {
        **service_env,
        "DFW_WEBHOOKS_QUEUE": queues["webhooks"],
        "DFW_WEBHOOKS__SECRET": SECRET,
        "DFW_WEBHOOKS__BACKOFF_S": "0.2",
        "DFW_WEBHOOKS__BACKOFF_MAX_S": "1",
        "DFW_WEBHOOKS__TIMEOUT_S": "5",
        "DFW_WEBHOOKS__CALLERS": json.dumps({"uploads-svc": f"{base}/caller"}),
    }
    cases = {  # key -> (image, explicit callback, metadata)
        "hooks/ok.jpg": ("deepface_img50.jpg", f"{base}/ok", "upload_id=u-ok"),
        "hooks/flaky.jpg": ("deepface_img51.jpg", f"{base}/flaky", "upload_id=u-flaky"),
        "hooks/bad.jpg": ("deepface_img54.jpg", f"{base}/bad", "upload_id=u-bad"),
        "hooks/caller.jpg": ("deepface_img53.jpg", None, "caller=uploads-svc"),
    }
    for key, (image, _, _) in cases.items():
        s3_client.upload_file(str(dev_dir / PHOTOS / image), bucket, key)
    factory = session_factory(postgres_url)
    expected_rows = {"hooks/ok.jpg": 1, "hooks/flaky.jpg": 3, "hooks/bad.jpg": 1, "hooks/caller.jpg": 1}
    queue_names = f"{env['DFW_DETECT_QUEUE']},{env['DFW_WEBHOOKS_QUEUE']}"
    with running_worker(env, queue_names, tmp_path / "worker.log") as log:
        for key, (_, callback, meta) in cases.items():
            enqueue_with_callback(env, f"s3://{bucket}/{key}", callback, meta)

        def all_delivered() -> bool:
            return all(len(deliveries_of(factory, k)) >= n for k, n in expected_rows.items())

        wait_for(all_delivered, 240, log, "webhook deliveries")
        # a duplicate delivery task for a delivered job sends nothing and records nothing
        ok_job = deliveries_of(factory, "hooks/ok.jpg")[0].job_id
        code = f"from tasks.webhooks import enqueue_webhook; enqueue_webhook({ok_job})"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, cwd=REPO)
        wait_for(lambda: "'status': 'duplicate'" in log.read_text(), 60, log, "the duplicate delivery task")
        time.sleep(1)  # the 400 must not be retried either: give a retry time to show up

    for key, rows in expected_rows.items():
        assert len(deliveries_of(factory, key)) == rows, key
    assert len(state.on("/ok")) == 1 and len(state.on("/bad")) == 1 and len(state.on("/caller")) == 1

    (request,) = state.on("/ok")
    stamp, signed = request["headers"][TIMESTAMP_HEADER.lower()], request["headers"][SIGNATURE_HEADER.lower()]
    assert signed.startswith("sha256=")
    assert verify_signature(SECRET, stamp, request["body"], signed, time.time(), 300)
    assert not verify_signature("wrong", stamp, request["body"], signed, time.time(), 300)
    body = json.loads(request["body"])
    assert (
        body["job_id"] == ok_job
        and body["status"] == "done"
        and body["label"] in ("real", "fake", "uncertain")
    )
    assert (
        isinstance(body["score"], float)
        and body["coverage"]["faces"] >= 0
        and body["coverage"]["frames"] == 1
    )
    assert body["metadata"] == {"upload_id": "u-ok"} and len(body["media_sha256"]) == 64
    assert body["threshold"] is not None and body["error_code"] is None

    flaky = deliveries_of(factory, "hooks/flaky.jpg")
    assert [d.status_code for d in flaky] == [500, 500, 200] and [d.attempt for d in flaky] == [1, 2, 3]
    assert all(d.url == f"{base}/flaky" and d.duration_s >= 0 for d in flaky)
    sends = [r["at"] for r in state.on("/flaky")]
    assert len(sends) == 3 and sends[1] - sends[0] >= 0.1 and sends[2] - sends[1] >= 0.2  # backoff waited
    assert [d.status_code for d in deliveries_of(factory, "hooks/bad.jpg")] == [400]
    (caller,) = state.on("/caller")
    assert json.loads(caller["body"])["metadata"] == {"caller": "uploads-svc"}
